// Reads {"dir": DIR, "texts": [...]} as JSON on stdin and writes a JSON list of token id lists:
// transformers.js (npm @lenml/tokenizers, a port of Hugging Face's tokenizers) loading DIR's
// tokenizer.json and tokenizer_config.json, and encoding each text as apply_chat_template(...,
// tokenize=True) does after rendering: add_special_tokens false (the template writes BOS itself),
// special-token spellings parsed as those tokens. Used by tests/py/test_chat.py.
const fs = require('fs')
const path = require('path')
const { TokenizerLoader } = require('@lenml/tokenizers')
let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', chunk => { input += chunk })
process.stdin.on('end', () => {
  const { dir, texts } = JSON.parse(input)
  const read = name => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'))
  const tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: read('tokenizer.json'),
    tokenizerConfig: read('tokenizer_config.json')
  })
  const ids = texts.map(t => Array.from(tokenizer.encode(t, { add_special_tokens: false })))
  process.stdout.write(JSON.stringify(ids) + '\n')
})
