import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, symlinkSync, linkSync, readFileSync, lstatSync, readlinkSync, readdirSync, utimesSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runMemorySession } from './support/transfer-harness.js';

function mkTree(root: string): void {
  mkdirSync(join(root, 'a/b/c'), { recursive: true });
  mkdirSync(join(root, 'empty/nested'), { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(join(root, 'a', `f${i}.bin`), Buffer.alloc(100 + i * 37, i));
  writeFileSync(join(root, 'a/b/c/big.bin'), Buffer.alloc(3 * 1024 * 1024 + 5, 7));
  writeFileSync(join(root, 'zero'), '');
  writeFileSync(join(root, 'one'), 'x');
  symlinkSync('../one', join(root, 'a/link'));
  symlinkSync('/nonexistent/dangling', join(root, 'dangling'));
  linkSync(join(root, 'one'), join(root, 'a/hard'));
  chmodSync(join(root, 'one'), 0o640);
  utimesSync(join(root, 'a/f1.bin'), 1_600_000_000, 1_600_000_000.5);
}

function snapshot(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(root, p));
    if (st.isDirectory()) {
      out.push(`d ${p} ${(st.mode & 0o7777).toString(8)}`);
      out.push(...snapshot(root, p));
    } else if (st.isSymbolicLink()) out.push(`l ${p} -> ${readlinkSync(join(root, p))}`);
    else out.push(`f ${p} ${(st.mode & 0o7777).toString(8)} ${st.size} ${Math.floor(st.mtimeMs)} ${st.nlink} ${readFileSync(join(root, p)).toString('base64').slice(0, 40)}`);
  }
  return out;
}

test('memory session: every entry type arrives, second run skips everything', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-tb-'));
  try {
    const src = join(dir, 'src');
    mkdirSync(src);
    mkTree(src);
    const dst = join(dir, 'dst');
    const r = await runMemorySession(`${src}/`, dst);
    if (r.sender instanceof Error) throw r.sender;
    if (r.receiver instanceof Error) throw r.receiver;
    assert.deepEqual(snapshot(dst), snapshot(src));
    assert.equal(r.sender.failures.length, 0);
    assert.equal(r.sender.summary.committed, 53);
    const again = await runMemorySession(`${src}/`, dst);
    if (again.sender instanceof Error) throw again.sender;
    assert.equal(again.sender.summary.committed, 0);
    assert.equal(again.sender.summary.skipped, 53);
    assert.equal(again.sender.bytesSent, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('memory session: -P 4 with split ranges gives the same tree', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-tb-'));
  try {
    const src = join(dir, 'src');
    mkdirSync(src);
    mkTree(src);
    const dst = join(dir, 'dst');
    const r = await runMemorySession(`${src}/`, dst, { streams: 4, splitThreshold: 1 << 20, rangeSize: 256 * 1024, chunkSize: 64 * 1024 });
    if (r.sender instanceof Error) throw r.sender;
    if (r.receiver instanceof Error) throw r.receiver;
    assert.equal(r.sender.streams, 4);
    assert.deepEqual(r.sender.failures.map(String), []);
    assert.deepEqual(snapshot(dst), snapshot(src));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
