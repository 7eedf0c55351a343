/**
 * Interrupted transfers: kill -9 of either side mid-file, and connections cut at
 * seeded byte offsets by the proxy. Each must leave no truncated file under a final
 * name, and a re-run must complete (resuming verified partial files).
 *
 * The proxy's rate limit makes the transfer last long enough to interrupt it at a
 * known point (a temp file exists with some data) without any timing assertion.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { startProxy } from './support/delay-proxy.js';
import { lastJson, sendTo, startRecv, transfer } from './support/net-harness.js';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

function pseudoRandom(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, Math.min(i, n - 4));
  }
  return b;
}

function dataset(): TreeSpec {
  const s: TreeSpec = { 'big1.bin': pseudoRandom(6 << 20, 1), 'big2.bin': pseudoRandom(5 << 20, 2) };
  for (let i = 0; i < 40; i++) s[`small/s${i}.txt`] = pseudoRandom(2000 + i * 50, 100 + i);
  return s;
}

async function walkFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walkFiles(dir, r)));
    else out.push(r);
  }
  return out;
}

/** Every final-named file in dst is complete and correct (temp files excepted). */
async function assertNoTruncatedFinalFile(src: string, dst: string): Promise<void> {
  for (const rel of await walkFiles(dst).catch(() => [] as string[])) {
    if (/(^|\/)\.ferry-[0-9a-f]{8}\..*\.part$/.test(rel)) continue;
    const [a, b] = await Promise.all([fsp.readFile(path.join(src, rel)), fsp.readFile(path.join(dst, rel))]);
    assert.ok(a.equals(b), `${rel} is under its final name but differs from the source (${b.length} of ${a.length} bytes)`);
  }
}

async function tempBytes(dst: string): Promise<number> {
  let n = 0;
  for (const rel of await walkFiles(dst).catch(() => [] as string[])) {
    if (/\.ferry-[0-9a-f]{8}\..*\.part$/.test(rel)) n += (await fsp.stat(path.join(dst, rel)).catch(() => ({ size: 0 }))).size;
  }
  return n;
}

async function waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const victim of ['sender', 'receiver'] as const) {
  test(`kill -9 of the ${victim} mid-file, then a re-run resumes and completes`, async () => {
    const root = await tmpDir('ferry-kill-');
    const src = path.join(root, 'src');
    const dst = path.join(root, 'dst');
    await makeTree(src, dataset());
    const rv = await startRecv(dst);
    const proxy = await startProxy({ targetPort: rv.port, delayMs: 1, rateBytesPerSec: 3 << 20 });
    try {
      const s = sendTo(`${src}/`, proxy.port, ['-P', '1']);
      await waitFor(async () => (await tempBytes(dst)) >= 1 << 20, 'a partial temp file of 1 MiB');
      (victim === 'sender' ? s.child : rv.child).kill('SIGKILL');
      const [sr, rr] = await Promise.all([s.done, rv.done]);
      if (victim === 'sender') assert.equal(rr.code, 4, rr.stderr);
      else assert.equal(sr.code, 4, sr.stderr);
      await assertNoTruncatedFinalFile(src, dst);
    } finally {
      await proxy.close();
    }
    const before = await tempBytes(dst);
    assert.ok(before > 0, 'the interrupted run left a partial file to resume');
    const again = await transfer(`${src}/`, dst, ['--json']);
    assert.equal(again.send.code, 0, again.send.stderr);
    assert.equal(again.recv.code, 0, again.recv.stderr);
    const j = lastJson(again.send.stdout);
    assert.ok((j['resumedBytes'] as number) > 0, `resumedBytes ${j['resumedBytes']}`);
    assert.ok((j['bytesSent'] as number) < (j['bytesTotal'] as number));
    assert.deepEqual(await compareTrees(src, dst), []);
    assert.equal(await tempBytes(dst), 0);
    assert.deepEqual((await walkFiles(dst)).filter((r) => r.includes('.ferry-')), []);
  });
}

test('connection cut at seeded byte offsets: exit 4, no truncated final file, a re-run completes', async () => {
  const root = await tmpDir('ferry-cut-');
  const src = path.join(root, 'src');
  await makeTree(src, dataset());
  // Deterministic offsets (xorshift, seed 2026) spread over the session, both directions.
  let x = 2026;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  // Measure a whole session through the proxy first, then cut inside it.
  const probe = await startRecv(path.join(root, 'probe'));
  const p0 = await startProxy({ targetPort: probe.port, delayMs: 0 });
  const ok = await sendTo(`${src}/`, p0.port, ['-P', '1']).done;
  assert.equal(ok.code, 0, ok.stderr);
  await probe.done;
  const totalUp = p0.bytesUp;
  const totalDown = p0.bytesDown;
  await p0.close();
  const cases = [
    { up: Math.floor(totalUp * (0.0001 + next() * 0.0005)) }, // handshake / manifest
    { up: Math.floor(totalUp * (0.05 + next() * 0.4)) },
    { up: Math.floor(totalUp * (0.5 + next() * 0.45)) },
    { down: Math.floor(totalDown * (0.1 + next() * 0.8)) }, // receiver → sender: decisions, commits
  ];
  for (const [i, c] of cases.entries()) {
    const dst = path.join(root, `dst${i}`);
    const rv = await startRecv(dst, ['--max-auth-failures', '1']);
    const proxy = await startProxy({
      targetPort: rv.port,
      delayMs: 0,
      ...(c.up !== undefined ? { cutAfterBytes: c.up } : {}),
      ...(c.down !== undefined ? { cutAfterBytesDown: c.down } : {}),
    });
    try {
      const sr = await sendTo(`${src}/`, proxy.port, ['-P', '1']).done;
      const rr = await rv.done;
      assert.equal(sr.code, 4, `case ${JSON.stringify(c)}: sender ${sr.code}: ${sr.stderr}`);
      assert.ok(rr.code === 4 || rr.code === 3, `case ${JSON.stringify(c)}: receiver ${rr.code}: ${rr.stderr}`);
      await assertNoTruncatedFinalFile(src, dst);
    } finally {
      await proxy.close();
    }
    const again = await transfer(`${src}/`, dst);
    assert.equal(again.send.code, 0, again.send.stderr);
    assert.deepEqual(await compareTrees(src, dst), []);
  }
});
