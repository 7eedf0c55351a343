/**
 * native/content-hash.c is ferry's own XXH3-64; @node-rs/xxhash (xxHash as released) is the
 * reference. With each stripe loop this CPU has (scalar, sse2, avx2, avx512: hashKernel
 * switches), the addon's one-shot and streamed digests equal two seeded xxh3.xxh64 (seed 0,
 * seed 0x9e3779b97f4a7c15) and the reference's streaming Xxh3 fed the same pieces:
 * - every length 0-2048 (every short-input path, the 256-byte buffer, the 1 KiB block edge),
 *   from unaligned data, the state itself at an unaligned address;
 * - random lengths up to 4 MiB, cut at random points, pieces from 1 byte to 300 KiB;
 * - a state carried across a kernel switch (all kernels keep the same accumulators).
 * Under FERRY_NATIVE=0 only the reference's one-shot against its own streaming runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';
import { netBatchAddon } from '../src/native/index.js';

const n = netBatchAddon();
const skip = n ? false : process.env.FERRY_NATIVE === '0' ? 'FERRY_NATIVE=0: the fallbacks run' : 'the native addon is not built';
const SEEDS = [0n, 0x9e3779b97f4a7c15n];
const KERNELS = ['scalar', 'sse2', 'avx2', 'avx512'];

const pool = randomBytes((4 << 20) + 64);

let seed = 12345;
function rnd(k: number): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed % k;
}

function want(data: Uint8Array): string {
  return SEEDS.map((s) => xxh3.xxh64(data, s).toString(16).padStart(16, '0')).join('');
}

/** Random piece lengths adding up to len; `big` allows pieces up to 300 KiB. */
function cuts(len: number, big: boolean): number[] {
  const out: number[] = [];
  for (let off = 0; off < len; ) {
    const r = rnd(10);
    const k = Math.min(len - off, r < 4 ? 1 + rnd(80) : r < 7 ? 1 + rnd(700) : big ? 1 + rnd(300_000) : 1 + rnd(3000));
    out.push(k);
    off += k;
  }
  return out;
}

function nativeStreamed(data: Uint8Array, pieces: number[], between?: () => void): string {
  const raw = Buffer.alloc(n!.hashStateBytes + 3);
  const state = raw.subarray(3); // no alignment promised
  n!.hashInit(state);
  let off = 0;
  for (const k of pieces) {
    n!.hashUpdate(state, data.subarray(off, off + k));
    off += k;
    between?.();
  }
  const out = Buffer.alloc(16);
  n!.hashDigest(state, out);
  return out.toString('hex');
}

function referenceStreamed(data: Uint8Array, pieces: number[]): string {
  return SEEDS.map((s) => {
    const h = xxh3.Xxh3.withSeed(s);
    let off = 0;
    for (const k of pieces) {
      h.update(data.subarray(off, off + k));
      off += k;
    }
    return h.digest().toString(16).padStart(16, '0');
  }).join('');
}

function oneShot(data: Uint8Array): string {
  const out = Buffer.alloc(16);
  n!.hashOf(data, out);
  return out.toString('hex');
}

function kernels(): string[] {
  const best = n!.hashKernel();
  const have = KERNELS.filter((k) => n!.hashKernel(k) === k);
  n!.hashKernel(best);
  return have;
}

test('xxh3: the reference streams what it hashes one-shot (both seeds, random splits)', () => {
  for (const len of [0, 1, 16, 17, 128, 129, 240, 241, 256, 257, 1024, 1025, 100_000]) {
    const data = pool.subarray(5, 5 + len);
    assert.equal(referenceStreamed(data, cuts(len, false)), want(data), `${len} bytes`);
  }
});

test('xxh3: every length 0-2048, one-shot and streamed, each kernel, equals @node-rs/xxhash', { skip }, () => {
  const best = n!.hashKernel();
  const have = kernels();
  assert.ok(have.includes('scalar'), 'the portable kernel is always there');
  try {
    for (const kernel of have) {
      assert.equal(n!.hashKernel(kernel), kernel);
      for (let len = 0; len <= 2048; len++) {
        const data = pool.subarray(len % 13, (len % 13) + len);
        const w = want(data);
        assert.equal(oneShot(data), w, `${kernel}: one-shot, ${len} bytes`);
        const pieces = cuts(len, false);
        assert.equal(nativeStreamed(data, pieces), w, `${kernel}: streamed, ${len} bytes in ${pieces.length} pieces`);
        assert.equal(nativeStreamed(data, [len]), w, `${kernel}: streamed in one piece, ${len} bytes`);
      }
    }
  } finally {
    n!.hashKernel(best);
  }
});

test('xxh3: random lengths up to 4 MiB, random splits, each kernel, equal the reference streaming', { skip }, () => {
  const best = n!.hashKernel();
  try {
    for (const kernel of kernels()) {
      n!.hashKernel(kernel);
      for (let i = 0; i < 6; i++) {
        const len = i === 0 ? 4 << 20 : 2049 + rnd(4 << 20);
        const start = rnd(64);
        const data = pool.subarray(start, start + len);
        const w = want(data);
        assert.equal(oneShot(data), w, `${kernel}: one-shot, ${len} bytes at +${start}`);
        const pieces = cuts(len, true);
        assert.equal(referenceStreamed(data, pieces), w);
        assert.equal(nativeStreamed(data, pieces), w, `${kernel}: streamed, ${len} bytes at +${start} in ${pieces.length} pieces`);
      }
    }
  } finally {
    n!.hashKernel(best);
  }
});

test('xxh3: a state carried across kernel switches gives the same digest', { skip }, () => {
  const best = n!.hashKernel();
  const have = kernels();
  try {
    const data = pool.subarray(1, 1 + 300_001);
    let i = 0;
    const got = nativeStreamed(data, cuts(data.length, false), () => n!.hashKernel(have[i++ % have.length]));
    assert.equal(got, want(data));
  } finally {
    n!.hashKernel(best);
  }
});
