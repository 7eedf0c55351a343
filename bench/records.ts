/**
 * Record-layer micro-benchmark: CPU seconds per GiB of content sealed and opened, by
 * the data plane (native/records.c, Node's OpenSSL) and by the node:crypto fallback,
 * beside a plain memory copy of the same bytes (what a record layer without
 * encryption or integrity would cost at least).
 *
 *   node dist/bench/records.js [--gib N] [--batch BYTES] [--runs N]
 *
 * Each case moves N GiB of content through batches of `batch` bytes (default 256 KiB,
 * 16 records): seal = sealRecords into one reused output buffer; sealv = the JS
 * gathered seal the channel uses without the addon; open = openRecords in place (each
 * batch is first restored from a pristine sealed copy; that copy's cost is measured by
 * the "copy" row and subtracted). CPU time is process.cpuUsage() (user+system), so
 * other load on the machine does not inflate it as it does wall time; the median of the
 * runs is printed.
 */
import { randomBytes } from 'node:crypto';
import { jsRecords, nativeRecords, RecordSealer, sealedLength, type RecordBatcher } from '../src/secure/record-layer.js';
import { nativeStatus } from '../src/native/index.js';

const GIB = 1024 ** 3;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

function cpu(fn: () => void): { cpu: number; wall: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const c = process.cpuUsage(c0);
  return { cpu: (c.user + c.system) / 1e6, wall: (performance.now() - t0) / 1000 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const gib = arg('gib', 1);
const batch = arg('batch', 256 * 1024);
const runs = arg('runs', 3);
const total = gib * GIB;
const iters = Math.max(1, Math.round(total / batch));
const key = randomBytes(16);
const iv = randomBytes(12);
const plain = randomBytes(batch);
const sealedLen = sealedLength(batch);
const out = Buffer.alloc(sealedLen);
const work = Buffer.alloc(sealedLen);
const res = new Int32Array(4 + 2 * 256);

function copyCase(): () => void {
  return () => {
    for (let i = 0; i < iters; i++) out.copy(work);
  };
}

function sealCase(b: RecordBatcher): () => void {
  const ctx = b.aeadNew(key, iv, false);
  return () => {
    let seq = 0;
    for (let i = 0; i < iters; i++) {
      b.sealRecords(ctx, seq, [plain], out, 0);
      seq += Math.ceil(batch / 16384);
    }
  };
}

function sealvCase(): () => void {
  const s = new RecordSealer({ key, iv, seq: 0n }, { batcher: jsRecords });
  return () => {
    for (let i = 0; i < iters; i++) {
      if (Number(s.seq) > 2 ** 23) s.setKeys({ key, iv, seq: 0n });
      s.sealv([plain]);
    }
  };
}

function openCase(b: RecordBatcher): () => void {
  // One pristine batch sealed at seq 0, opened again and again at seq 0 after a restore.
  const pristine = Buffer.alloc(sealedLen);
  b.sealRecords(b.aeadNew(key, iv, false), 0, [plain], pristine, 0);
  const ctx = b.aeadNew(key, iv, true);
  return () => {
    for (let i = 0; i < iters; i++) {
      pristine.copy(work);
      const n = b.openRecords(ctx, 0, work, 0, work.length, 256, res);
      if (res[1] !== 0 || n !== Math.ceil(batch / 16384)) throw new Error(`open failed: status ${res[1]}`);
    }
  };
}

const st = nativeStatus();
console.log(`records bench: ${gib} GiB in batches of ${batch} bytes, median of ${runs}; records: ${st.records} (${st.recordsReason}); node ${process.version}`);
const native = nativeRecords();
const cases: [string, () => void][] = [['copy (memcpy of the sealed bytes)', copyCase()]];
if (native) cases.push(['seal native', sealCase(native)], ['open native (minus copy)', openCase(native)]);
cases.push(['seal js (sealRecords, copies out)', sealCase(jsRecords)], ['seal js (sealv, gathered)', sealvCase()], ['open js (minus copy)', openCase(jsRecords)]);

let copyCpu = 0;
console.log('case                                   CPU s/GiB   wall s/GiB   GB/s (CPU)');
for (const [name, fn] of cases) {
  fn(); // warm up (and check) once: a tenth of the work would do, but batches are what they are
  const cpus: number[] = [];
  const walls: number[] = [];
  for (let r = 0; r < runs; r++) {
    const m = cpu(fn);
    cpus.push(m.cpu);
    walls.push(m.wall);
  }
  let c = median(cpus) / gib;
  let w = median(walls) / gib;
  if (name.startsWith('copy')) copyCpu = c;
  if (name.includes('minus copy')) {
    c -= copyCpu;
    w -= copyCpu;
  }
  console.log(`${name.padEnd(38)} ${c.toFixed(3).padStart(9)}   ${w.toFixed(3).padStart(10)}   ${(GIB / 1e9 / c).toFixed(2).padStart(10)}`);
}
