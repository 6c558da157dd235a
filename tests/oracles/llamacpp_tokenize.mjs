// llamacpp_tokenize.mjs: llama.cpp's tokenizer (the prebuilt v0.4.0 in node-llama-cpp 3.21.1) on a
// vocabulary-only GGUF.
//
//   node llamacpp_tokenize.mjs VOCAB.gguf < {"texts": [...], "special": bool}  ->  JSON on stdout
//
// For each text its ids without BOS; "special": special-token spellings parsed (llama.cpp's
// parse_special, ./run --parse-special) or plain text. A file llama.cpp refuses gives
// {"error": "..."} and exit code 0, so that the test can say why.
import {readFileSync} from "node:fs";
import {loadModelOrReport, startLlama} from "./llamacpp_common.mjs";

const [modelPath] = process.argv.slice(2);
const {texts, special} = JSON.parse(readFileSync(0, "utf8"));
const model = await loadModelOrReport(await startLlama(), modelPath, {vocabOnly: true});
console.log(JSON.stringify({ids: texts.map((t) => Array.from(model.tokenize(t, special)))}));
process.exit(0);
