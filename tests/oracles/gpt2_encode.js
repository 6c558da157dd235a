// Reads a JSON list of strings on stdin, writes a JSON list of GPT-2 token id lists on stdout,
// using the npm package gpt-3-encoder (a port of openai/gpt-2 src/encoder.py with GPT-2's real
// 50,257-token vocabulary). Used by test_tokenizer.py as the reference.
const { encode } = require('gpt-3-encoder')

let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', chunk => { input += chunk })
process.stdin.on('end', () => {
  const texts = JSON.parse(input)
  process.stdout.write(JSON.stringify(texts.map(t => encode(t))) + '\n')
})
