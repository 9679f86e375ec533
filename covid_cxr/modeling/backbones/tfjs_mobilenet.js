// Reads nsfwjs's TF.js MobileNetV2 for covid_cxr/backbones/mobilenet_tfjs.py.
// usage: node tfjs_mobilenet.js MODEL_DIR OUT_DIR [INPUT_NHWC_FLOAT32_BIN]
// Writes OUT_DIR/model.json (topology + weights manifest) and OUT_DIR/weights.bin (the raw shard); with an
// input file, also runs the model in TF.js (CPU backend) and writes the pooled features to OUT_DIR/features.bin.
const fs = require('fs');
const path = require('path');
const [modelDir, outDir, inputFile] = process.argv.slice(2);
const model = require(path.resolve(modelDir, 'model.min.js'));
const shard = Buffer.from(require(path.resolve(modelDir, 'group1-shard1of1.min.js')), 'base64');
fs.writeFileSync(path.join(outDir, 'model.json'), JSON.stringify(model));
fs.writeFileSync(path.join(outDir, 'weights.bin'), shard);

async function reference() {
  const tf = require('@tensorflow/tfjs-core');
  require('@tensorflow/tfjs-backend-cpu');
  const tfl = require('@tensorflow/tfjs-layers');
  await tf.setBackend('cpu');
  const weightData = shard.buffer.slice(shard.byteOffset, shard.byteOffset + shard.byteLength);
  const weightSpecs = model.weightsManifest.flatMap((group) => group.weights);
  const net = await tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: model.modelTopology, weightSpecs, weightData }));
  const pooled = tfl.model({ inputs: net.inputs, outputs: net.getLayer('flatten_1').output });
  const raw = fs.readFileSync(inputFile);
  const values = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const input = tf.tensor4d(values, [values.length / (224 * 224 * 3), 224, 224, 3]);
  const features = await pooled.predict(input).data();
  fs.writeFileSync(path.join(outDir, 'features.bin'), Buffer.from(new Float32Array(features).buffer));
}

if (inputFile) {
  reference().catch((err) => { console.error(err); process.exit(1); });
}
