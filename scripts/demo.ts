/**
 * `npm run demo` — the README's first command: ferry doing its main job on a
 * small real dataset, checked byte for byte.
 *
 * It generates a deterministic tree (2,000 files of 1–9 KB, ~10 MB, plus one
 * 64 MiB file; incompressible content from bench/datasets.ts) in a temp
 * directory, runs the transfer, compares every path, type, size, mode and
 * SHA-256 of the result with the source, prints what it did with timings, and
 * removes everything. Exit status 1 when the result differs or ferry fails.
 *
 * The transfer is one function, `transfer(src, dst)`: `ferry recv` and `ferry send`
 * over loopback, encrypted, with a fresh random secret.
 * ferry is spawned through bin/ferry, which sets up its environment.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { generateDataset } from '../bench/datasets.js';
import { compareToSnapshot, snapshotTree } from '../bench/verify.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FERRY = join(ROOT, 'bin', 'ferry');

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * The step being demonstrated: move the tree at `src` to `dst` over the network,
 * on loopback: `ferry recv` listens on a free port, `ferry send` connects, both
 * authenticate with a fresh shared secret (CPace) and the data is encrypted.
 * Returns 0 when both sides exit 0.
 */
async function transfer(src: string, dst: string): Promise<number> {
  const secret = randomBytes(16).toString('hex');
  const env = { ...process.env, FERRY_SECRET: secret };
  say('  $ ferry recv DST --listen 127.0.0.1:0 --progress=never   (FERRY_SECRET set to a fresh random secret)');
  const recv = spawn(FERRY, ['recv', dst, '--listen', '127.0.0.1:0', '--progress=never'], { env, stdio: ['ignore', 'inherit', 'pipe'] });
  const recvDone = new Promise<number>((res) => recv.once('close', (code, signal) => res(code ?? (signal ? 128 : 1))));
  let stderr = '';
  const port = await new Promise<number | null>((res) => {
    recv.stderr.setEncoding('utf8').on('data', (d: string) => {
      process.stderr.write(d);
      stderr += d;
      const m = /listening on [^\s]*:(\d+)/.exec(stderr);
      if (m) res(Number(m[1]));
    });
    recv.once('close', () => res(null));
  });
  if (port === null) return recvDone;
  say(`  $ ferry send SRC/ 127.0.0.1:${port} --progress=never`);
  const sent = await new Promise<number>((res, rej) => {
    const child = spawn(FERRY, ['send', `${src}/`, `127.0.0.1:${port}`, '--progress=never'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', rej);
    child.once('close', (code, signal) => res(code ?? (signal ? 128 : 1)));
  });
  const received = await recvDone;
  return sent !== 0 ? sent : received;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, (performance.now() - t0) / 1000];
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'ferry-demo-'));
  const src = join(work, 'src');
  const dst = join(work, 'dst');
  try {
    say(`ferry demo (working in ${work})`);
    say('1. generating a dataset: 2,000 small files and one 64 MiB file (deterministic, incompressible)');
    const [gen, genS] = await timed(async () => {
      const small = await generateDataset(join(src, 'small'), { files: 2000, minSize: 1024, maxSize: 9 * 1024, perDir: 500, seed: 'demo' });
      const big = await generateDataset(join(src, 'big'), { files: 1, minSize: 64 * 1024 * 1024, maxSize: 64 * 1024 * 1024, seed: 'demo-big' });
      return { files: small.files + big.files, bytes: small.bytes + big.bytes };
    });
    say(`   ${gen.files} files, ${(gen.bytes / 1e6).toFixed(1)} MB in ${genS.toFixed(2)} s`);

    say('2. sending it with ferry send → ferry recv over loopback (authenticated, encrypted)');
    const [code, xferS] = await timed(() => transfer(src, dst));
    if (code !== 0) {
      say(`   ferry exited with status ${code}: FAILED`);
      return 1;
    }
    say(`   done in ${xferS.toFixed(2)} s (${(gen.bytes / 1e6 / xferS).toFixed(0)} MB/s)`);

    say('3. verifying every path, type, size, mode and SHA-256 against the source');
    const [cmp, verS] = await timed(async () => compareToSnapshot(await snapshotTree(src), dst));
    if (!cmp.ok) {
      say(`   RESULT DIFFERS FROM SOURCE: ${cmp.differences} difference(s), e.g.:`);
      for (const e of cmp.examples) say(`     ${e}`);
      return 1;
    }
    say(`   identical (${verS.toFixed(2)} s)`);
    say(`ok: ${gen.files} files, ${(gen.bytes / 1e6).toFixed(1)} MB transferred in ${xferS.toFixed(2)} s and verified`);
    return 0;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`demo: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
