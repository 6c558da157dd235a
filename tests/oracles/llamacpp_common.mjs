// llamacpp_common.mjs: how the scripts that drive llama.cpp (the prebuilt v0.4.0 in node-llama-cpp
// 3.21.1) start it, in one place: tests/oracles/llamacpp.mjs, llamacpp_probs.mjs,
// llamacpp_tokenize.mjs and bench/llamacpp.mjs. The import below resolves against this file's
// folder, so bench/ finds the package installed here by `npm ci --omit=optional`.
import {getLlama} from "node-llama-cpp";

// The library on the CPU, the prebuilt binary only (never a build from source). Without a logger
// only errors are printed; with one, llama.cpp's info lines go to it (the bench reads its timings
// from them).
export function startLlama(logger) {
    if (logger) return getLlama({gpu: false, build: "never", logLevel: "info", logger});
    return getLlama({gpu: false, build: "never", logLevel: "error"});
}

// The model, or, when llama.cpp refuses it: {"error": its message's first line} on stdout and exit
// code 0, so that the calling test can say why. options: node-llama-cpp's (e.g. vocabOnly).
export async function loadModelOrReport(llama, modelPath, options = {}) {
    try {
        return await llama.loadModel({modelPath, ...options});
    } catch (e) {
        console.log(JSON.stringify({error: String(e.message || e).split("\n")[0]}));
        process.exit(0);
    }
}

// A context with an F32 KV cache, as ours (llama.cpp's default is F16, which moves logits by
// ~1e-3); one thread, 128 positions and batches of 64 unless options say otherwise.
export function createContext(model, options = {}) {
    return model.createContext({contextSize: 128, threads: 1, batchSize: 64,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", ...options});
}
