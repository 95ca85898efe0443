#!/usr/bin/env node
// Runs a prom QDQ ONNX model in ONNX Runtime (npm's onnxruntime-node, CPU execution provider).
//   run:   node run_model.js --ort-dir DIR --model M.onnx --input X.f32 --shape N,C,H,W --output Y.f32
//          [--threads T] [--optimization all|disabled] [--qdq-fusion on|off] [--batch B] [--dump-dir DIR]
//          X.f32: raw little-endian float32 images; Y.f32: the float32 logits [N, classes].
//   bench: node run_model.js --ort-dir DIR --model M.onnx --bench --shape C,H,W --batches 1,32
//          [--threads T] [--warmup W] [--iters I]: median milliseconds per batch.
// Prints one JSON line on stdout; exits 1 with a one-line message on stderr on failure.
'use strict';
const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
  const o = { threads: 1, optimization: 'all', 'qdq-fusion': 'on', batch: 64, warmup: 3, iters: 10, batches: '1,32', bench: false };
  for (let i = 0; i < argv.length; ++i) {
    const key = argv[i].replace(/^--/, '');
    if (key === 'bench') o.bench = true;
    else if (i + 1 < argv.length) o[key] = argv[++i];
    else throw new Error(`${argv[i]} needs a value`);
  }
  for (const k of ['threads', 'batch', 'warmup', 'iters']) o[k] = Number(o[k]);
  for (const k of ['ort-dir', 'model', 'shape']) if (!o[k]) throw new Error(`--${k} is required`);
  o.shape = o.shape.split(',').map(Number);
  if (!['all', 'disabled', 'basic', 'extended'].includes(o.optimization))
    throw new Error(`--optimization ${o.optimization}: expected all, basic, extended or disabled`);
  if (!['on', 'off'].includes(o['qdq-fusion'])) throw new Error(`--qdq-fusion ${o['qdq-fusion']}: expected on or off`);
  return o;
}

async function session(ort, o) {
  // Sequential execution on intra-op threads only: the same thread count as prom's engine.
  return ort.InferenceSession.create(o.model, {
    executionProviders: ['cpu'], graphOptimizationLevel: o.optimization,
    intraOpNumThreads: o.threads, interOpNumThreads: 1, executionMode: 'sequential',
    // off: no QDQ transformers (no QLinear fusion, no re-quantization of float biases to int32): each
    // QuantizeLinear/DequantizeLinear runs as the ONNX spec defines it, the other optimizations stay.
    extra: o['qdq-fusion'] === 'off' ? { session: { disable_quant_qdq: '1' } } : {},
  });
}

async function run(ort, o) {
  const s = await session(ort, o);
  const per = o.shape.slice(1).reduce((a, b) => a * b, 1);
  const bytes = fs.readFileSync(o.input);
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  if (all.length !== o.shape[0] * per) throw new Error(`${o.input}: ${all.length} floats, expected ${o.shape.join('x')}`);
  const chunks = [];
  let classes = 0;
  const t0 = process.hrtime.bigint();
  for (let n0 = 0; n0 < o.shape[0]; n0 += o.batch) {
    const n = Math.min(o.batch, o.shape[0] - n0);
    const x = new ort.Tensor('float32', all.slice(n0 * per, (n0 + n) * per), [n, ...o.shape.slice(1)]);
    const outs = await s.run({ [s.inputNames[0]]: x });
    const y = outs[s.outputNames[0]];
    if (o['dump-dir'])  // every graph output of batch n0 as raw bytes: DIR/<name>.<n0>.bin (debugging)
      for (const [name, t] of Object.entries(outs))
        fs.writeFileSync(path.join(o['dump-dir'], `${name}.${n0}.bin`), Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    classes = y.dims[y.dims.length - 1];
    chunks.push(Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  fs.writeFileSync(o.output, Buffer.concat(chunks));
  return { outputs: [o.shape[0], classes], ms };
}

async function bench(ort, o) {
  const s = await session(ort, o);
  const per = o.shape.reduce((a, b) => a * b, 1);
  const result = {};
  for (const b of o.batches.split(',').map(Number)) {
    const data = new Float32Array(b * per).map(() => Math.random() * 2 - 1);
    const feeds = { [s.inputNames[0]]: new ort.Tensor('float32', data, [b, ...o.shape]) };
    const times = [];
    for (let i = 0; i < o.warmup + o.iters; ++i) {
      const t0 = process.hrtime.bigint();
      await s.run(feeds);
      if (i >= o.warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((p, q) => p - q);
    result[b] = times[Math.floor(times.length / 2)];
  }
  return { batch_ms: result };
}

(async () => {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
    const ort = require(path.resolve(o['ort-dir'], 'node_modules', 'onnxruntime-node'));
    const out = o.bench ? await bench(ort, o) : await run(ort, o);
    out.ort_version = ort.env.versions ? ort.env.versions.node : 'unknown';
    out.threads = o.threads;
    out.optimization = o.optimization;
    out.qdq_fusion = o['qdq-fusion'];
    console.log(JSON.stringify(out));
  } catch (e) {
    console.error(`run_model.js: ${(e && e.message ? e.message : String(e)).split('\n')[0]}`);
    process.exit(1);
  }
})();
