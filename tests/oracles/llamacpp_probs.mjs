// llamacpp_probs.mjs: llama.cpp's next-token distribution at every position of a given token
// sequence (teacher-forced), for comparing whole distributions rather than greedy choices.
//
//   node llamacpp_probs.mjs MODEL.gguf < ids.json   ->  one JSON object on stdout
//
// ids.json is a JSON array of token ids, BOS included if the model uses one. Output:
// {"probs": [[[token, p], ...] per position]}, the probabilities at temperature 1 with no top-k,
// top-p or min-p cut (only tokens with p >= 1e-6 are listed), on one thread with an F32 KV cache.
// A model llama.cpp refuses gives {"error": "..."}.
import {readFileSync} from "node:fs";
import {createContext, loadModelOrReport, startLlama} from "./llamacpp_common.mjs";

const [modelPath] = process.argv.slice(2);
const ids = JSON.parse(readFileSync(0, "utf8"));
const model = await loadModelOrReport(await startLlama(), modelPath);
const context = await createContext(model);
const next = {probabilities: true, options: {temperature: 1, topK: 0, topP: 1, minP: 0}};
const out = await context.getSequence().controlledEvaluate(ids.map((t) => [t, {generateNext: next}]));
const probs = out.map((o) => Array.from(o.next.probabilities.entries()).filter(([, p]) => p >= 1e-6));
// exit only once the pipe has taken the whole line (process.exit would cut it at 64 KB)
process.stdout.write(JSON.stringify({probs}) + "\n", () => process.exit(0));
