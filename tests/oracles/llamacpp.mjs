// llamacpp.mjs: llama.cpp (the prebuilt v0.4.0 in node-llama-cpp 3.21.1) as an oracle.
//
//   node llamacpp.mjs MODEL.gguf N_GEN < texts.json   ->  one JSON object on stdout
//
// texts.json is a JSON array of strings. For each text: its ids without BOS (special tokens not
// parsed, as ./run --tokenize). For the first text: the greedy continuation of N_GEN tokens from
// BOS (when the vocabulary adds one) + its ids, on one thread, through the library API (the
// `complete` CLI adds a repeat penalty, so it is not used). A model llama.cpp refuses gives
// {"error": "..."} and exit code 0, so that the test can say why.
import {readFileSync} from "node:fs";
import {createContext, loadModelOrReport, startLlama} from "./llamacpp_common.mjs";

const [modelPath, nGen] = process.argv.slice(2);
const texts = JSON.parse(readFileSync(0, "utf8"));
const model = await loadModelOrReport(await startLlama(), modelPath);
const ids = texts.map((t) => Array.from(model.tokenize(t, false)));
const bos = model.tokens.bos;
const prompt = (model.tokens.shouldPrependBosToken && bos != null ? [bos] : []).concat(ids[0]);
const context = await createContext(model);
const gen = [];
for await (const token of context.getSequence().evaluate(prompt, {temperature: 0})) {
    gen.push(token);
    if (gen.length >= Number(nGen)) break;
}
console.log(JSON.stringify({ids, prompt, gen}));
process.exit(0);
