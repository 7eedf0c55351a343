/**
 * `hash`: the content hash (fs/checksum.ts) against SHA-256 from node:crypto, in GB
 * per CPU second on one core, for the update sizes ferry uses: 4 KiB (a small file,
 * one-shot), 64 KiB (a chunk of a big file) and 1 MiB (--checksum and resume reads).
 * CPU time, not wall time, so a busy machine does not move the figure much.
 */
import { createHash, randomBytes } from 'node:crypto';
import { contentHashOf, newContentHash } from '../../src/fs/checksum.js';
import { markdownTable, textTable } from '../stats.js';
import type { StandaloneSuite } from '../suite.js';

const TOTAL = 1 << 30;

function cpuSeconds(fn: () => void): number {
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

export const hashSuite: StandaloneSuite = {
  name: 'hash',
  group: 'hash',
  title: 'content hash: GB hashed per CPU second, one core (1 GiB per cell, 256 MiB under --quick)',
  async runStandalone(ctx) {
    const buf = randomBytes(1 << 20);
    const rows: string[][] = [['update size', 'content hash (XXH3-64 ×2) GB/s', 'SHA-256 GB/s', 'ratio']];
    const json: Record<string, { xxh3: number; sha256: number }> = {};
    for (const chunk of [4096, 65536, 1 << 20]) {
      const total = ctx.quick ? TOTAL / 4 : TOTAL;
      const xx = cpuSeconds(() => {
        if (chunk === 4096) {
          for (let off = 0; off < total; off += chunk) contentHashOf(buf.subarray(off % buf.length, (off % buf.length) + chunk));
        } else {
          const h = newContentHash();
          for (let off = 0; off < total; off += chunk) h.update(buf.subarray(off % buf.length, (off % buf.length) + chunk));
          h.digest();
        }
      });
      const sha = cpuSeconds(() => {
        if (chunk === 4096) {
          for (let off = 0; off < total; off += chunk) createHash('sha256').update(buf.subarray(off % buf.length, (off % buf.length) + chunk)).digest();
        } else {
          const h = createHash('sha256');
          for (let off = 0; off < total; off += chunk) h.update(buf.subarray(off % buf.length, (off % buf.length) + chunk));
          h.digest();
        }
      });
      const a = total / 1e9 / xx;
      const b = total / 1e9 / sha;
      json[String(chunk)] = { xxh3: a, sha256: b };
      rows.push([chunk === 4096 ? '4 KiB (one-shot per file)' : chunk === 65536 ? '64 KiB' : '1 MiB', a.toFixed(2), b.toFixed(2), `${(a / b).toFixed(1)}×`]);
    }
    return { lines: [textTable(rows)], markdown: markdownTable(rows), json };
  },
};
