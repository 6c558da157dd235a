// llamacpp.mjs: llama.cpp's speed on one GGUF file, for `make bench` to set beside ours.
//
//   node bench/llamacpp.mjs MODEL.gguf THREADS N_PREDICT [f32|f16] < prompt.json  ->  one JSON line
//
// prompt.json is the prompt's ids as ./run --tokenize prints them (BOS included), as a JSON array,
// so both programs see exactly the same tokens. llama.cpp is the prebuilt v0.4.0 of
// node-llama-cpp 3.21.1 (installed in tests/oracles by `npm ci --omit=optional`), driven through
// its library API: one context with the whole prompt in one batch, greedy decoding of N_PREDICT
// tokens, a KV cache of the given element type (default f32; the bench passes ./run's --kv-cache).
//
// Two sets of figures come back:
// - llama.cpp's own (its perf counters, llama_perf_context_print): prompt eval time over the
//   prompt's tokens, eval time over the decoded tokens. These are what llama.cpp's own tools
//   report, without the JavaScript binding's cost, and the ones the bench compares with ours.
// - wall clock seen from JavaScript around the same work: the prompt until the first token, then
//   the rest. The difference is what the binding adds per token (the bench reports it).
import {readFileSync} from "node:fs";
import {createContext, startLlama} from "../tests/oracles/llamacpp_common.mjs";

const [modelPath, threadsArg, nPredictArg, kvArg = "f32"] = process.argv.slice(2);
const threads = Number(threadsArg), nPredict = Number(nPredictArg);
const kvType = {f32: "F32", f16: "F16"}[kvArg];
if (!modelPath || !(threads >= 1) || !(nPredict >= 2) || !kvType) {
    console.error("usage: node bench/llamacpp.mjs MODEL.gguf THREADS N_PREDICT [f32|f16] < prompt.json");
    process.exit(2);
}
const prompt = JSON.parse(readFileSync(0, "utf8"));

const logs = [];
const llama = await startLlama((level, message) => logs.push(message));
const model = await llama.loadModel({modelPath});  // a refusal throws: the bench reports the exit
const context = await createContext(model, {
    contextSize: prompt.length + nPredict + 8, threads, batchSize: prompt.length,
    performanceTracking: true, experimentalKvCacheKeyType: kvType,
    experimentalKvCacheValueType: kvType});
const sequence = context.getSequence();

const t0 = performance.now();
let tFirst = 0, n = 0;
for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
    if (n === 0) tFirst = performance.now();
    if (++n >= nPredict) break;
}
const tEnd = performance.now();

logs.length = 0;
await context.printTimings();
// e.g. "prompt eval time =  5.62 ms /  18 tokens (...)" and "eval time = 49.23 ms / 63 runs (...)"
function perf(label) {
    const re = new RegExp(`\\b${label} time =\\s*([0-9.]+) ms /\\s*([0-9]+) (tokens|runs)`);
    for (const line of logs.join("\n").split("\n")) {
        const m = line.match(re);
        if (m && !(label === "eval" && line.includes("prompt eval"))) return [Number(m[1]), Number(m[2])];
    }
    console.error(`llamacpp.mjs: no '${label} time' in llama.cpp's timings:\n${logs.join("")}`);
    process.exit(1);
}
const [promptMs, promptTokens] = perf("prompt eval");
const [evalMs, evalRuns] = perf("eval");
console.log(JSON.stringify({
    prompt_tokens: promptTokens, prompt_tps: promptTokens / (promptMs / 1000),
    decode_tokens: evalRuns, decode_tps: evalRuns / (evalMs / 1000),
    wall_prompt_tps: prompt.length / ((tFirst - t0) / 1000),
    wall_decode_tps: (n - 1) / ((tEnd - tFirst) / 1000),
}));
process.exit(0);
