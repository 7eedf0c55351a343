// `ferry send` walks SRC while the connection is being made (modes/send.ts startWalk,
// core/prefetch): a receiver that accepts but never answers the handshake still sees
// the sender's walk under way (its warning for a FIFO arrives before the handshake
// times out), and when the connection fails the walk is stopped with nothing left open.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { isFerryError, type FerryError } from '../src/core/errors.js';
import { send } from '../src/modes/send.js';
import { sendOptions } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

test('send walks its source during the connection and stops the walk when the connection fails', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const spec: Record<string, string> = {};
  for (let d = 0; d < 6; d++) for (let i = 0; i < 50; i++) spec[`d${d}/f${i}`] = 'x';
  await makeTree(src, spec);
  execFileSync('mkfifo', [path.join(src, 'd5', 'pipe')]);

  // A "receiver" that takes the connection and says nothing.
  const held: Socket[] = [];
  const srv = createServer((s) => held.push(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  // What this process holds open inside SRC (the walk's directories).
  const openInSrc = async (): Promise<string[]> =>
    (await Promise.all((await fsp.readdir('/proc/self/fd')).map((f) => fsp.readlink(`/proc/self/fd/${f}`).catch(() => '')))).filter((l) => l.startsWith(src));

  const warnings: Array<{ what: string; at: number }> = [];
  let failedAt = 0;
  let error: FerryError | undefined;
  try {
    await send(
      sendOptions(src, port, 'a-secret-for-this-test-only', {
        handshakeTimeoutMs: 800,
        events: { onWarning: (e) => warnings.push({ what: e.message, at: performance.now() }) },
      }),
    );
  } catch (e) {
    failedAt = performance.now();
    error = e as FerryError;
  }
  for (const s of held) s.destroy();
  srv.close();
  assert.ok(error && isFerryError(error), `send failed with a FerryError (${String(error)})`);
  const w = warnings.find((x) => x.what.includes('pipe'));
  assert.ok(w, `the walk reported the FIFO while connecting (warnings: ${JSON.stringify(warnings.map((x) => x.what))})`);
  assert.ok(w.at < failedAt);
  for (let i = 0; i < 50 && (await openInSrc()).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(await openInSrc(), [], 'no directory of SRC left open');
});
