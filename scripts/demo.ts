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
 * The transfer is one function, `transfer(src, dst)`, so switching the demo from
 * the local copy to a network send/recv over loopback is a change in one place.
 * ferry is spawned through bin/ferry, which sets up its environment.
 */
import { spawn } from 'node:child_process';
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

function ferry(args: string[]): Promise<number> {
  say(`  $ ferry ${args.join(' ')}`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(FERRY, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('close', (code, signal) => resolvePromise(code ?? (signal ? 128 : 1)));
  });
}

/** The step being demonstrated: move the tree at `src` to `dst`. Returns ferry's exit code. */
async function transfer(src: string, dst: string): Promise<number> {
  return ferry(['copy', '--progress=never', `${src}/`, `${dst}/`]);
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

    say('2. transferring with ferry');
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
