/**
 * Issue #11, kill -9: the built CLI (`ferry recv` and `ferry send`, child processes,
 * FERRY_SECRET in the environment) moves a many-file tree through a rate-limited proxy;
 * ten times in a row one side — chosen by the seed — is killed with SIGKILL once the
 * sender has sent a seeded fraction of what was still missing. After each kill: no file under a
 * final name differs from the source. After the ten: one more run completes, the trees
 * are identical, and no `.ferry-*.part` temp file is left.
 *
 * The kill points are progress-based (bytes the sender put through the proxy), not
 * timings, so the test reproduces from its seed (printed in the test name and every
 * assertion) on a loaded machine too.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { prng } from './support/secure-helpers.js';
import { startProxy } from './support/delay-proxy.js';
import { sendTo, startRecv, transfer } from './support/net-harness.js';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

const SEED = 1105;
const TEMP_RE = /(^|\/)\.ferry-[0-9a-f]{8}\..*\.part$/;

function bytes(n: number, rnd: () => number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((rnd() * 2 ** 32) >>> 0, Math.min(i, n - 4));
  return b;
}

async function walkFiles(dir: string, rel = ''): Promise<{ rel: string; size: number }[]> {
  const out: { rel: string; size: number }[] = [];
  for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => [])) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walkFiles(dir, r)));
    else out.push({ rel: r, size: (await fsp.lstat(path.join(dir, r)).catch(() => ({ size: 0 }))).size });
  }
  return out;
}

async function assertNoWrongFinalFile(src: string, dst: string, where: string): Promise<void> {
  for (const { rel } of await walkFiles(dst)) {
    if (TEMP_RE.test(rel)) continue;
    const [a, b] = await Promise.all([fsp.readFile(path.join(src, rel)), fsp.readFile(path.join(dst, rel))]);
    assert.ok(a.equals(b), `${where}: ${rel} is under its final name but differs from the source (${b.length} of ${a.length} bytes)`);
  }
}

test(`kill -9 (seed ${SEED}): either side killed at 10 seeded points of a many-file transfer, then a re-run: identical tree, no temp leftovers`, async () => {
  const rnd = prng(SEED);
  const root = await tmpDir('ferry-adv-kill-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  const spec: TreeSpec = {};
  for (let i = 0; i < 4; i++) spec[`big/b${i}.bin`] = bytes(1536 * 1024 + i * 4099, rnd);
  for (let d = 0; d < 6; d++) for (let i = 0; i < 50; i++) spec[`d${d}/s${i}.bin`] = bytes(500 + Math.floor(rnd() * 12_000), rnd);
  await makeTree(src, spec);
  let total = 0;
  for (const v of Object.values(spec)) total += (v as Buffer).length;

  const log: string[] = [];
  let interrupted = 0;
  for (let k = 0; k < 10; k++) {
    const victim = rnd() < 0.5 ? 'sender' : 'receiver';
    const frac = 0.05 + rnd() * 0.25;
    let have = 0;
    for (const f of await walkFiles(dst)) have += f.size; // published, or in a temp file the next run resumes
    // Kill once this run has carried a seeded fraction of what is still missing (plus the session's start).
    const target = 16 * 1024 + Math.floor(frac * Math.max(0, total - have));
    const where = `seed ${SEED} kill ${k}: ${victim} after ${target} bytes sent (DST holds ${have} of ${total})`;
    log.push(where);
    const rv = await startRecv(dst, [], {}, 30_000);
    // About 6 MB/s: a run lasts long enough to be cut at a chosen point, the whole test stays short.
    const proxy = await startProxy({ targetPort: rv.port, delayMs: 1, rateBytesPerSec: 6 << 20 });
    try {
      const s = sendTo(`${src}/`, proxy.port, [], {}, 30_000);
      let finished = false;
      void Promise.all([s.done, rv.done]).then(() => (finished = true));
      while (!finished && proxy.bytesUp < target) await new Promise((r) => setTimeout(r, 5));
      const killed = !finished;
      if (killed) {
        (victim === 'sender' ? s.child : rv.child).kill('SIGKILL');
        interrupted++;
      }
      const sr = await s.done;
      // The receiver ends its session when the sender dies; had the sender not started one yet, recv
      // keeps listening by design (modes/recv.ts): then it is stopped here.
      const rr = await Promise.race([rv.done, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
      if (rr === null) {
        rv.child.kill('SIGTERM');
        await rv.done;
        assert.ok(killed && victim === 'sender' && proxy.bytesUp < 64 * 1024, `${where}: recv hung after ${proxy.bytesUp} bytes`);
      } else if (killed) {
        if (victim === 'sender') assert.equal(rr.code, 4, `${where}: receiver exit ${rr.code}: ${rr.stderr}`);
        else assert.equal(sr.code, 4, `${where}: sender exit ${sr.code}: ${sr.stderr}`);
        assert.doesNotMatch(victim === 'sender' ? rr.stderr : sr.stderr, /FERRY_E_INTERNAL|\bat .*\.js:\d+/, `${where}: the surviving side crashed`);
      }
      await assertNoWrongFinalFile(src, dst, where);
    } finally {
      await proxy.close();
    }
  }
  assert.ok(interrupted >= 8, `only ${interrupted} of 10 runs were interrupted:\n${log.join('\n')}`);

  const again = await transfer(`${src}/`, dst);
  assert.equal(again.send.code, 0, `seed ${SEED} re-run: ${again.send.stderr}`);
  assert.equal(again.recv.code, 0, `seed ${SEED} re-run: ${again.recv.stderr}`);
  assert.deepEqual(await compareTrees(src, dst), [], `seed ${SEED}`);
  assert.deepEqual((await walkFiles(dst)).filter((f) => f.rel.includes('.ferry-')).map((f) => f.rel), [], `seed ${SEED}: temp files left`);
});
