/**
 * Issue #11, records: an attacker on the path of a real transfer (in-process `send()`
 * and `recv()` over loopback TCP, through test/support/record-proxy.ts) flips a bit,
 * drops, duplicates or reorders a record, or cuts the stream, in either direction.
 * Every case must end with both sides reporting failure (FERRY_E_INTEGRITY, or the
 * FERRY_E_CONNECT / FERRY_E_PROTOCOL that follows it on the other side) and no file
 * under a final name that differs from the source. secure-tamper.test.ts checks the
 * same faults on a bare channel; net-resume.test.ts cuts the CLI at byte offsets;
 * issue-11-no-encrypt-integrity.test.ts injects and forges frames and records.
 *
 * The seeded cases print their seed, direction, record and fault in the test name, so
 * a failure reproduces with the same seed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isFerryError, type FerryError } from '../src/core/errors.js';
import { recv, type RecvOutcome } from '../src/modes/recv.js';
import { send } from '../src/modes/send.js';
import { prng } from './support/secure-helpers.js';
import { HOSTILE_SECRET, connectAsSender } from './support/hostile-peer.js';
import { MsgType, TRANSFER_VERSION, encodeError, encodeSession } from '../src/wire/messages.js';
import { sendOptions } from './support/net-harness.js';
import { startRecordProxy, type Direction, type RecordMutation } from './support/record-proxy.js';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

function bytes(n: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

let srcDir: string | undefined;
/** One source tree for every case: 40 small files and two of 300 KiB (the TempFile path). */
async function source(): Promise<string> {
  if (srcDir) return srcDir;
  const root = await tmpDir('ferry-adv-rec-src-');
  const spec: TreeSpec = { 'big/one.bin': bytes(300 * 1024, 1), 'big/two.bin': bytes(300 * 1024, 2) };
  for (let i = 0; i < 40; i++) spec[`small/s${i}.bin`] = bytes(1000 + i * 700, 100 + i);
  await makeTree(root, spec);
  srcDir = root;
  return root;
}

async function walkFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => [])) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walkFiles(dir, r)));
    else out.push(r);
  }
  return out;
}

/** Every file under a final name equals the source's. */
async function assertNoWrongFinalFile(src: string, dst: string, where: string): Promise<void> {
  for (const rel of await walkFiles(dst)) {
    if (/(^|\/)\.ferry-[0-9a-f]{8}\..*\.part$/.test(rel)) continue;
    const [a, b] = await Promise.all([fsp.readFile(path.join(src, rel)), fsp.readFile(path.join(dst, rel))]);
    assert.ok(a.equals(b), `${where}: ${rel} is under its final name but differs from the source (${b.length} of ${a.length} bytes)`);
  }
}

interface Run {
  sendError: FerryError | undefined;
  /** The receiver's session error, or the error it dropped a connection with before a session started. */
  recvError: FerryError | undefined;
  recvWarnings: string[];
  records: Record<Direction, number>;
  dst: string;
  src: string;
}

async function transferThrough(mutate: RecordMutation): Promise<Run> {
  const src = await source();
  const dst = path.join(await tmpDir('ferry-adv-rec-'), 'dst');
  let port = 0;
  const warnings: string[] = [];
  const outcome: Promise<RecvOutcome> = recv({
    dst,
    host: '127.0.0.1',
    port: 0,
    secret: HOSTILE_SECRET,
    ktls: 'off',
    keepServing: false,
    maxAuthFailures: 1,
    preserveSpecial: false,
    idleTimeoutMs: 1500,
    handshakeTimeoutMs: 5000,
    onListening: (_h, p) => (port = p),
    onWarning: (m) => warnings.push(m),
  });
  while (port === 0) await new Promise((r) => setImmediate(r));
  const proxy = await startRecordProxy(port, mutate);
  let sendError: FerryError | undefined;
  try {
    await send(sendOptions(src, proxy.port, HOSTILE_SECRET, { idleTimeoutMs: 1500, handshakeTimeoutMs: 5000 }));
  } catch (e) {
    sendError = e as FerryError;
  }
  // A connection broken before its SESSION arrived is dropped and recv keeps listening
  // (modes/recv.ts): then end it with a session of our own that we break off at once.
  const settled = await Promise.race([outcome.then(() => true), new Promise((r) => setTimeout(() => r(false), 500))]);
  let dropped: FerryError | undefined;
  if (!settled) {
    const w = warnings.find((x) => x.startsWith('dropped a connection'));
    if (w) {
      const code = /FERRY_E_[A-Z]+/.exec(w)?.[0] ?? (/no progress/.test(w) ? 'FERRY_E_TIMEOUT' : /authenticat|cut before|integrity/i.test(w) ? 'FERRY_E_INTEGRITY' : 'FERRY_E_CONNECT');
      dropped = { code, message: w } as FerryError;
    }
    const p = await connectAsSender(port, HOSTILE_SECRET);
    await p.send(MsgType.SESSION, encodeSession({ version: TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [] }));
    await p.next();
    await p.send(MsgType.ERROR, encodeError({ code: 'FERRY_E_INTERRUPTED', message: 'test over' }));
    await p.end();
  }
  const o = await outcome;
  await proxy.close();
  return { sendError, recvError: settled ? o.sessions[0]?.error : dropped, recvWarnings: warnings, records: { ...proxy.records }, dst, src };
}

const FAILURE_CODES = new Set(['FERRY_E_INTEGRITY', 'FERRY_E_CONNECT', 'FERRY_E_PROTOCOL', 'FERRY_E_TIMEOUT']);

async function assertFailedSafely(r: Run, where: string, receiverCode = 'FERRY_E_INTEGRITY', downFault = false): Promise<void> {
  assert.ok(isFerryError(r.sendError) && FAILURE_CODES.has(r.sendError.code), `${where}: sender ended with ${String(r.sendError)}`);
  if (downFault && r.recvError === undefined) {
    // A fault in the receiver's own last records (COMMITTED, SUMMARY) reaches only the
    // sender: the receiver had already verified and published everything, so it may end
    // well — then its tree must be the complete, exact source. The sender still fails.
    assert.deepEqual(await compareTrees(r.src, r.dst), [], `${where}: receiver ended well with an incomplete tree`);
    return;
  }
  assert.ok(r.recvError && FAILURE_CODES.has(r.recvError.code), `${where}: receiver ended with ${String(r.recvError)} (${r.recvWarnings.join('; ')})`);
  if (receiverCode) {
    const codes = [r.sendError.code, r.recvError!.code];
    assert.ok(codes.includes(receiverCode as never), `${where}: expected ${receiverCode} on one side, got ${codes.join(', ')}`);
  }
  await assertNoWrongFinalFile(r.src, r.dst, where);
}

let baseline: Record<Direction, number> | undefined;
/** Records per direction in an untouched transfer (the seeded cases pick inside it). */
async function untouched(): Promise<Record<Direction, number>> {
  if (baseline) return baseline;
  const r = await transferThrough((_d, rec) => [rec]);
  assert.equal(r.sendError, undefined, String(r.sendError));
  assert.deepEqual(await compareTrees(r.src, r.dst), []);
  baseline = r.records;
  return baseline;
}

test('records: an untouched transfer through the tampering proxy succeeds (the proxy itself is transparent)', async () => {
  const b = await untouched();
  // Down: SESSION_OK, the decisions, the summary and end, in 2 or 3 records: the sender
  // walks while it connects, so its manifest may come right behind its SESSION and the
  // receiver's SESSION_OK and first decisions then share a record.
  assert.ok(b.up > 20 && b.down >= 2, JSON.stringify(b));
});

const flip = (rec: Buffer, at: number, bit: number): Buffer[] => {
  const c = Buffer.from(rec);
  c[at % c.length] = c[at % c.length]! ^ (1 << bit);
  return [c];
};

const named: [string, Direction, RecordMutation][] = [
  ['first record after the handshake dropped (prefix truncation, Terrapin CVE-2023-48795)', 'up', (d, r, i) => (d === 'up' && i === 0 ? [] : [r])],
  ['first record from the receiver dropped (prefix truncation)', 'down', (d, r, i) => (d === 'down' && i === 0 ? [] : [r])],
  ['a bit flipped in a data record\'s ciphertext', 'up', (d, r, i) => (d === 'up' && i === 10 ? flip(r, 100, 3) : [r])],
  ['a bit flipped in a record header (length)', 'up', (d, r, i) => (d === 'up' && i === 5 ? flip(r, 4, 0) : [r])],
  ['a bit flipped in the GCM tag', 'up', (d, r, i) => (d === 'up' && i === 7 ? flip(r, r.length - 1, 7) : [r])],
  ['a data record duplicated (replay)', 'up', (d, r, i) => (d === 'up' && i === 8 ? [r, r] : [r])],
  ['a decisions record duplicated (replay towards the sender)', 'down', (d, r, i) => (d === 'down' && i === 1 ? [r, r] : [r])],
  ['the stream cut in the middle of a record', 'up', (d, r, i) => (d === 'up' && i === 12 ? 'cut' : [r])],
];

for (const [what, , m] of named) {
  test(`records: ${what}: both sides fail, no wrong file under a final name`, async () => {
    await untouched();
    const r = await transferThrough(m);
    // A dropped *last-in-flight* record is noticed only by the idle timeout (nothing follows it).
    await assertFailedSafely(r, what, what.includes('cut') || what.includes('dropped') ? '' : 'FERRY_E_INTEGRITY');
  });
}

test('records: two data records swapped (reordered): both sides fail, no wrong file under a final name', async () => {
  await untouched();
  let held: Buffer | null = null;
  const r = await transferThrough((d, rec, i) => {
    if (d !== 'up') return [rec];
    if (i === 6) {
      held = rec;
      return [];
    }
    if (i === 7) return [rec, held!];
    return [rec];
  });
  await assertFailedSafely(r, 'reordered');
});

const SEED = 20261130;
const FAULTS = ['flip', 'drop', 'duplicate', 'reorder', 'cut'] as const;
{
  // Ten seeded faults spread over the session, both directions (the names carry the seed).
  const rnd = prng(SEED);
  for (let k = 0; k < 10; k++) {
    const dir: Direction = k % 4 === 3 ? 'down' : 'up';
    const fault = FAULTS[Math.floor(rnd() * FAULTS.length)]!;
    const pos = rnd();
    const byte = Math.floor(rnd() * 1 << 20);
    const bit = Math.floor(rnd() * 8);
    test(`records (seed ${SEED} #${k}): ${fault} of ${dir} record at ${(pos * 100).toFixed(1)}% of the session: both sides fail, no wrong final file`, async () => {
      const b = await untouched();
      // The last record of each direction is its authenticated end; stay before it (after it the session is over).
      // One more record of margin: how frames coalesce into records varies from run to run (the receiver's end of
      // stream may share a record with its SUMMARY), so a faulted run may have one record fewer than the untouched one.
      const at = Math.floor(pos * Math.max(1, b[dir] - 3));
      let held: Buffer | null = null;
      let done = false;
      let applied = false;
      const r = await transferThrough((d, rec, i) => {
        if (d !== dir || done) return [rec];
        if (fault === 'reorder' && held) {
          done = true;
          return [rec, held];
        }
        if (i !== at) return [rec];
        if (fault !== 'reorder') done = applied = true;
        switch (fault) {
          case 'flip':
            return flip(rec, byte, bit);
          case 'drop':
            return [];
          case 'duplicate':
            return [rec, rec];
          case 'reorder':
            held = rec; // released after the next record; if none follows, it is a dropped last record
            applied = true;
            return [];
          case 'cut':
            return 'cut';
        }
      });
      assert.ok(applied, `seed ${SEED} #${k}: the fault was never applied (record ${at} of ${dir})`);
      await assertFailedSafely(r, `seed ${SEED} #${k} ${fault} ${dir}@${at}`, fault === 'flip' || fault === 'duplicate' ? 'FERRY_E_INTEGRITY' : '', dir === 'down');
    });
  }
}
