// kill -9 in the middle of a copy: no truncated file is ever visible under its final
// name, and a re-run completes the tree and removes the leftover temp files.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { FERRY_MAIN, cleanupTmpDirs, compareTrees, makeTree, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

async function listFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  let names: string[];
  try {
    names = await fsp.readdir(path.join(root, rel));
  } catch {
    return out;
  }
  for (const n of names) {
    const r = rel === '' ? n : `${rel}/${n}`;
    const st = await fsp.lstat(path.join(root, r)).catch(() => null);
    if (st?.isDirectory()) out.push(...(await listFiles(root, r)));
    else if (st) out.push(r);
  }
  return out;
}

test('kill -9 mid-copy: final names are never truncated; a re-run completes and cleans up', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  const spec: Record<string, Buffer | string> = {};
  for (let i = 0; i < 4; i++) spec[`big/b${i}.bin`] = Buffer.alloc(6 * 1024 * 1024, i + 1);
  for (let i = 0; i < 100; i++) spec[`small/s${i}.txt`] = `small file ${i}\n`.repeat(i + 1);
  await makeTree(src, spec);
  const want = new Map<string, string>();
  for (const [k, v] of Object.entries(spec)) want.set(k, createHash('sha256').update(v).digest('hex'));

  // Slow, sequential read/write copy (4 KiB chunks) so the kill lands mid-file.
  const child = spawn(process.execPath, [FERRY_MAIN, 'copy', `${src}/`, dst, '--no-splice', '-c', '4K', '-q', '1', '--progress=never'], {
    stdio: 'ignore',
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let sawTemp = false;
  let finished = false;
  void exited.then(() => (finished = true));
  const deadline = Date.now() + 30_000;
  while (!finished && Date.now() < deadline) {
    const files = await listFiles(dst);
    if (files.some((f) => path.basename(f).startsWith('.ferry-') && f.startsWith('big/'))) {
      child.kill('SIGKILL');
      sawTemp = true;
      break;
    }
    await new Promise((r) => setImmediate(r));
  }
  await exited;
  assert.ok(sawTemp, 'the copy finished before a big temp file was seen; cannot test the interruption');

  // Right after the kill: every final-named file is complete and correct.
  const after1 = await listFiles(dst);
  const finals = after1.filter((f) => !path.basename(f).startsWith('.ferry-'));
  const tempsLeft = after1.filter((f) => path.basename(f).startsWith('.ferry-'));
  assert.ok(tempsLeft.length >= 1);
  for (const f of finals) {
    const h = createHash('sha256').update(await fsp.readFile(path.join(dst, f))).digest('hex');
    assert.equal(h, want.get(f), `${f} is visible under its final name but incomplete`);
  }
  assert.ok(finals.length < want.size, 'the copy was interrupted');

  // The re-run completes the tree and removes the leftovers.
  const r = await runFerry(['copy', `${src}/`, dst, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await compareTrees(src, dst), []);
  assert.deepEqual((await listFiles(dst)).filter((f) => path.basename(f).startsWith('.ferry-')), []);
});
