/**
 * Interruption and start-up refusals: Ctrl-C exits 130 with FERRY_E_INTERRUPTED and
 * leaves nothing truncated under a final name; `--ktls=on` on a kernel without kTLS
 * is refused before recv starts listening (not at the first connection).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { promises as fsp, createWriteStream } from 'node:fs';
import path from 'node:path';
import { FERRY_BIN, cleanupTmpDirs, compareTrees, runFerry, tmpDir } from './support/tree.js';
import { ktlsSupport } from '../src/secure/ktls.js';

after(cleanupTmpDirs);

test('SIGINT during a copy exits 130 with FERRY_E_INTERRUPTED; a re-run completes the tree', async () => {
  const root = await tmpDir();
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await fsp.mkdir(src);
  // Big enough that the copy is still running when the signal arrives.
  for (let i = 0; i < 4; i++) {
    const ws = createWriteStream(path.join(src, `f${i}`));
    const chunk = Buffer.alloc(1 << 20, i + 1);
    for (let k = 0; k < 128; k++) ws.write(chunk);
    ws.end();
    await once(ws, 'finish');
  }
  const child = spawn(FERRY_BIN, ['copy', '--progress=never', `${src}/`, dst], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // Wait until the copy has started writing, then interrupt it.
  for (let i = 0; i < 200; i++) {
    const names = await fsp.readdir(dst).catch(() => [] as string[]);
    if (names.length > 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill('SIGINT');
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 130, `expected the interrupted copy to exit 130 (stderr: ${stderr})`);
  assert.match(stderr, /FERRY_E_INTERRUPTED/);
  for (const name of await fsp.readdir(dst)) {
    if (name.endsWith('.part')) continue;
    const st = await fsp.stat(path.join(dst, name));
    assert.equal(st.size, 128 << 20, `${name} is published only when complete`);
  }
  const again = await runFerry(['copy', '--progress=never', `${src}/`, dst]);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(await compareTrees(src, dst), []);
  assert.equal((await fsp.readdir(dst)).filter((n) => n.endsWith('.part')).length, 0);
});

test('--ktls=on where kTLS is unavailable is refused at start with FERRY_E_KTLS (exit 2)', { skip: ktlsSupport().available ? 'this kernel has kTLS' : false }, async () => {
  const dst = await tmpDir();
  const r = await runFerry(['recv', dst, '--listen', '127.0.0.1:0', '--ktls=on', '--secret-file', '/dev/null']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /FERRY_E_KTLS: recv: --ktls=on but kTLS is not available/);
  assert.doesNotMatch(r.stderr, /listening on/);
});
