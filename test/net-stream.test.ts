/**
 * `ferry send - HOST:PORT` / `ferry recv - --listen`: one byte stream over the direct
 * mode, verified end to end (length and SHA-256 under the authenticated end), and the
 * clear refusals when a tree sender meets a stream receiver.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { TEST_SECRET, startRecv, sendTo } from './support/net-harness.js';
import { FERRY_MAIN, cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

interface Running {
  /** The port from "listening on 127.0.0.1:PORT" (recv only). */
  port: Promise<number>;
  done: Promise<{ code: number | null; out: Buffer; err: string }>;
}

/** Run the CLI with stdin from a file (or /dev/null) and a binary stdout. */
function run(args: string[], stdinFile?: string): Running {
  const c = spawn('sh', ['-c', `exec "$0" "$@" ${stdinFile ? '< "$FERRY_IN"' : '< /dev/null'}`, process.execPath, FERRY_MAIN, ...args], {
    env: { ...process.env, NO_COLOR: '1', FERRY_SECRET: TEST_SECRET, FERRY_IN: stdinFile ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let err = '';
  let gotPort!: (n: number) => void;
  const port = new Promise<number>((r) => (gotPort = r));
  c.stdout.on('data', (b: Buffer) => out.push(b));
  c.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(err);
    if (m) gotPort(Number(m[1]));
  });
  const done = new Promise<{ code: number | null; out: Buffer; err: string }>((resolve) =>
    c.on('close', (code) => resolve({ code, out: Buffer.concat(out), err })),
  );
  return { port, done };
}

test('send - / recv -: stdin arrives on the other stdout, byte for byte', { timeout: 60_000 }, async () => {
  const base = await tmpDir();
  const data = Buffer.alloc(5 << 20);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  const input = path.join(base, 'in.bin');
  await fsp.writeFile(input, data);
  const receiver = run(['recv', '-', '--listen', '127.0.0.1:0', '--progress=never']);
  const port = await receiver.port;
  const send = await run(['send', '-', `127.0.0.1:${port}`, '--progress=never'], input).done;
  const recv = await receiver.done;
  assert.equal(send.code, 0, send.err);
  assert.equal(recv.code, 0, recv.err);
  assert.equal(createHash('sha256').update(recv.out).digest('hex'), createHash('sha256').update(data).digest('hex'));
});

test('a tree sender meeting a stream receiver gets a clear refusal', { timeout: 60_000 }, async () => {
  const base = await tmpDir();
  await makeTree(path.join(base, 'src'), { 'a.txt': 'a' });
  const r = await startRecv('-');
  const s = sendTo(path.join(base, 'src'), r.port);
  const [send, recv] = await Promise.all([s.done, r.done]);
  assert.notEqual(send.code, 0);
  assert.match(send.stderr, /ferry send - HOST:PORT/);
  assert.notEqual(recv.code, 0);
});
