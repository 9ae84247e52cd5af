// Runs an ONNX model through ONNX Runtime (CPU) on float32 .npy inputs: the reference that the
// arcforge runtime is compared against, in the parity tests and in bench/runtime.
//
//   node run_model.js MODEL.onnx OUT_DIR IN_0.npy [IN_1.npy ...] [--threads T] [--bench REPEATS]
//                     [--optimization disabled|basic|extended|all]
//   (an input may be given as random:1x3x640x640 instead of a file; --optimization is ONNX Runtime's
//   graph optimization level, default all; `disabled` runs the nodes as written)
//
// Writes OUT_DIR/output_<i>.npy (float32) in the model's output order and OUT_DIR/outputs.json
// with the output names. With --bench, also times REPEATS runs after 3 warm-ups and prints
// {"median_ms": ...} on stdout.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function readNpy(file) {
  const buf = fs.readFileSync(file);
  const magic = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);
  if (buf.length < 10 || !buf.subarray(0, 6).equals(magic)) throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  if (!/'descr':\s*'<f4'/.test(header)) throw new Error(`${file}: only little-endian float32 is supported`);
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${file}: Fortran order is not supported`);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)[1];
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = buf.subarray(start + headerLen, start + headerLen + 4 * count);
  const data = new Float32Array(count);
  Buffer.from(data.buffer).set(bytes);
  return { shape, data };
}

function writeNpy(file, shape, data) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head);
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(Float32Array.from(data).buffer);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

function randomTensor(spec) {
  const shape = spec.slice('random:'.length).split('x').map(Number);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let state = 12345;
  for (let i = 0; i < data.length; ++i) {
    state = (state * 1103515245 + 12345) % 2147483648;
    data[i] = (state / 2147483648) * 2 - 1;
  }
  return { shape, data };
}

async function main() {
  const args = process.argv.slice(2);
  let threads = 1;
  let benchRepeats = 0;
  let optimization = 'all';
  const positional = [];
  for (let i = 0; i < args.length; ++i) {
    if (args[i] === '--threads') threads = Number(args[++i]);
    else if (args[i] === '--bench') benchRepeats = Number(args[++i]);
    else if (args[i] === '--optimization') optimization = args[++i];
    else positional.push(args[i]);
  }
  if (positional.length < 3) throw new Error('usage: run_model.js MODEL OUT_DIR IN.npy... [--threads T] [--bench N]');
  const [modelPath, outDir, ...inputFiles] = positional;
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: optimization,
  });
  if (inputFiles.length !== session.inputNames.length) {
    throw new Error(`${modelPath}: model has ${session.inputNames.length} inputs, got ${inputFiles.length} files`);
  }
  const feeds = {};
  session.inputNames.forEach((name, i) => {
    // "random:1x3x640x640" stands for a seeded uniform [-1, 1) tensor (benchmarks need no file).
    const { shape, data } = inputFiles[i].startsWith('random:') ? randomTensor(inputFiles[i]) : readNpy(inputFiles[i]);
    feeds[name] = new ort.Tensor('float32', data, shape);
  });
  const results = await session.run(feeds);
  fs.mkdirSync(outDir, { recursive: true });
  session.outputNames.forEach((name, i) => {
    const t = results[name];
    writeNpy(path.join(outDir, `output_${i}.npy`), t.dims, t.data);
  });
  fs.writeFileSync(path.join(outDir, 'outputs.json'), JSON.stringify(session.outputNames));
  if (benchRepeats > 0) {
    for (let i = 0; i < 3; ++i) await session.run(feeds);
    const times = [];
    for (let i = 0; i < benchRepeats; ++i) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    const median = times.length % 2 ? times[(times.length - 1) / 2]
      : 0.5 * (times[times.length / 2 - 1] + times[times.length / 2]);
    process.stdout.write(JSON.stringify({ median_ms: median, repeats: benchRepeats, threads }) + '\n');
  }
}

main().catch((e) => {
  process.stderr.write(`run_model.js: ${e.message}\n`);
  process.exit(1);
});
