/**
 * Issue #14, owners by name (`--names`): the sender sends the user and group names of
 * its ids, the receiver maps each to its own id, keeping the number where the name is
 * unknown (rsync's default over the network; ferry's option, numbers by default).
 *
 * The mapping module (fs/owner-names.ts) is tested on its own; the end-to-end test gives
 * the receiving `ferry recv` other names than the machine's (FERRY_TEST_OWNER_FILES: its
 * own passwd and group), so that a name known on both ends has a different id on each.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import { fileLookup, parseIdFile, PeerOwnerNames, SenderOwnerNames, systemLookup, validOwnerName, type NameLookup } from '../src/fs/owner-names.js';
import { parseRequest, remoteMeta, senderMeta, SSH_PROTOCOL } from '../src/modes/ssh-bootstrap.js';
import * as M from '../src/wire/messages.js';
import { sendTo, startRecv } from './support/net-harness.js';
import { startSshd } from './support/sshd.js';
import { requireTools } from './support/tools.js';
import { FERRY_BIN, cleanupTmpDirs, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const isRoot = process.geteuid?.() === 0;

const table = (users: Record<string, number>, groups: Record<string, number>): NameLookup => {
  const inv = (m: Record<string, number>): Map<number, string> => new Map(Object.entries(m).map(([n, i]) => [i, n]));
  const ui = inv(users);
  const gi = inv(groups);
  return { userName: (i) => ui.get(i), groupName: (i) => gi.get(i), userId: (n) => users[n], groupId: (n) => groups[n] };
};

test('owner names: the rules (1..32 bytes of [A-Za-z0-9._-], an optional trailing $)', () => {
  for (const ok of ['root', 'www-data', 'a', 'x'.repeat(32), 'HOST$', 'first.last', '_apt']) assert.ok(validOwnerName(ok), ok);
  for (const bad of ['', 'x'.repeat(33), 'a b', 'a:b', 'a$b', '$', 'ü', 'a/b', 'a\nb', `${'x'.repeat(32)}$`]) assert.ok(!validOwnerName(bad), JSON.stringify(bad));
});

test('owner names: parseIdFile reads passwd/group lines, first wins, skips junk', () => {
  const { byName, byId } = parseIdFile('root:x:0:0:root:/root:/bin/bash\n# c\n\nbad line\nsys:x:3:3::/:\nsys:x:9:9::/:\nalt:x:3:3::/:\nneg:x:-1:0::/:\n+nis::::\n');
  assert.deepEqual([...byName], [['root', 0], ['sys', 3], ['alt', 3]]);
  assert.deepEqual([...byId], [[0, 'root'], [3, 'sys'], [9, 'sys']]);
});

test('owner names: the sender names each id once, skips unnamed and invalid names', () => {
  const s = new SenderOwnerNames(table({ alice: 1000, 'bad name': 1001 }, { staff: 50 }));
  s.note(1000, 50);
  s.note(1000, 50);
  s.note(1001, 51);
  assert.deepEqual(s.take(), { users: [[1000, 'alice']], groups: [[50, 'staff']] });
  s.note(1000, 50);
  s.note(7, 50);
  assert.deepEqual(s.take(), { users: [], groups: [] });
});

test('owner names: the receiver maps known names, keeps the number otherwise', () => {
  const r = new PeerOwnerNames('peer', table({ alice: 2000 }, { staff: 60 }));
  r.add({ users: [[1000, 'alice'], [1001, 'bob']], groups: [[50, 'staff']] });
  assert.equal(r.uid(1000), 2000, 'alice is 2000 here');
  assert.equal(r.uid(1001), 1001, 'bob is unknown here: his number');
  assert.equal(r.uid(1234), 1234, 'an id the sender did not name: its number');
  assert.equal(r.gid(50), 60);
  assert.equal(r.gid(51), 51);
  // Without a lookup (the receiving user did not ask for names) every number is kept.
  const n = new PeerOwnerNames('peer');
  n.add({ users: [[1000, 'alice']], groups: [] });
  assert.equal(n.uid(1000), 1000);
  // Untrusted: an id named twice in a session is FERRY_E_PROTOCOL.
  assert.throws(() => r.add({ users: [[1000, 'carol']], groups: [] }), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'));
});

test('owner names: the system lookup (native getpw*_r, or the /etc files) agrees with /etc/passwd and /etc/group for daemon, bin, sys', () => {
  const pw = parseIdFile(readFileSync('/etc/passwd', 'utf8'));
  const gr = parseIdFile(readFileSync('/etc/group', 'utf8'));
  const sys = systemLookup();
  const files = fileLookup();
  let checked = 0;
  for (const name of ['root', 'daemon', 'bin', 'sys']) {
    const uid = pw.byName.get(name);
    if (uid !== undefined) {
      assert.equal(sys.userId(name), uid, name);
      assert.equal(files.userId(name), uid, name);
      assert.equal(sys.userName(uid), pw.byId.get(uid), `uid ${uid}`);
      checked++;
    }
    const gid = gr.byName.get(name);
    if (gid !== undefined) {
      assert.equal(sys.groupId(name), gid, name);
      assert.equal(sys.groupName(gid), gr.byId.get(gid), `gid ${gid}`);
    }
  }
  assert.ok(checked > 0, 'no well-known user in /etc/passwd');
  assert.equal(sys.userId('no-such-user-ferry'), undefined);
  assert.equal(sys.groupId('no-such-group-ferry'), undefined);
  assert.equal(sys.userName(0xfffffff0), undefined);
});

test('owner names: the manifest carries a name table only with OWNER_NAMES (round trip)', () => {
  const fields = M.manifestFields(M.SessionFlags.OWNERS | M.SessionFlags.OWNER_NAMES);
  assert.equal(fields.ownerNames, true);
  assert.equal(M.manifestFields(M.SessionFlags.OWNER_NAMES).ownerNames, false, 'names only with owners');
  const e: M.WireEntry = { index: 0, kind: 'file', path: 'f', size: 0, mode: 0o644, mtimeNs: 0n, uid: 1000, gid: 50 };
  const names = { users: [[1000, 'alice']] as Array<[number, string]>, groups: [[50, 'staff$']] as Array<[number, string]> };
  const b = M.encodeManifest([e], false, fields, names);
  assert.deepEqual(M.decodeManifestBatch(b, false, fields), { entries: [e], names });
  // A plain owners manifest is unchanged.
  assert.deepEqual(M.encodeManifest([e], false, { owners: true }), M.encodeManifest([e], false, { owners: true, ownerNames: false }, names));
});

test('owner names: the ssh mode asks both ends (--names travels in the bootstrap request)', () => {
  const key = Buffer.alloc(32).toString('base64');
  const req = (names: boolean): ReturnType<typeof parseRequest>['req'] =>
    parseRequest(
      JSON.stringify({ protocol: SSH_PROTOCOL, key, role: 'recv', paths: ['/d'], via: 'ssh', options: { owner: true, group: true, ...(names ? { names: true } : {}) } }),
    ).req;
  assert.equal(remoteMeta(req(true).options).ownerNames, true);
  assert.equal(senderMeta(req(true).options).ownerNames, true);
  assert.equal(remoteMeta(req(false).options).ownerNames, undefined);
});

/** A source tree whose files belong to daemon:sys, bin:sys and a nameless 54321:54322; and the receiving end's own names (daemon and sys under other ids, no bin). */
async function namesFixture(): Promise<{ base: string; src: string; env: Record<string, string>; ids: { daemon: number; bin: number; sys: number } }> {
  const pw = parseIdFile(readFileSync('/etc/passwd', 'utf8'));
  const gr = parseIdFile(readFileSync('/etc/group', 'utf8'));
  const daemon = pw.byName.get('daemon');
  const bin = pw.byName.get('bin');
  const sys = gr.byName.get('sys');
  assert.ok(daemon !== undefined && bin !== undefined && sys !== undefined, 'Debian has daemon, bin and the sys group');
  const base = await tmpDir('ferry-names-');
  const src = path.join(base, 'src');
  await fsp.mkdir(src);
  for (const f of ['known', 'unknown', 'nameless']) await fsp.writeFile(path.join(src, f), f);
  execFileSync('chown', ['daemon:sys', path.join(src, 'known')]);
  execFileSync('chown', ['bin:sys', path.join(src, 'unknown')]);
  execFileSync('chown', ['54321:54322', path.join(src, 'nameless')]);
  const etc = path.join(base, 'etc');
  await fsp.mkdir(etc);
  await fsp.writeFile(path.join(etc, 'passwd'), 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:2001:2001::/:/bin/false\n');
  await fsp.writeFile(path.join(etc, 'group'), 'root:x:0:\nsys:x:3001:\n');
  return { base, src, env: { FERRY_TEST_OWNER_FILES: etc }, ids: { daemon, bin, sys } };
}

async function owners(dst: string): Promise<Record<string, [number, number]>> {
  const out: Record<string, [number, number]> = {};
  for (const f of ['known', 'unknown', 'nameless']) {
    const st = await fsp.lstat(path.join(dst, f));
    out[f] = [st.uid, st.gid];
  }
  return out;
}

test('owner names end to end: send --names to recv --names maps names to the receiver\'s ids, keeps unknown ones by number', async (t) => {
  if (!isRoot) {
    t.skip('needs root (files of other users); CI runs as root');
    return;
  }
  const { base, src, env, ids } = await namesFixture();
  const run = async (dst: string, sendArgs: string[], recvArgs: string[]): Promise<void> => {
    const recv = await startRecv(dst, ['-o', '-g', ...recvArgs], env);
    const s = await sendTo(`${src}/`, recv.port, ['-o', '-g', ...sendArgs]).done;
    if (s.code !== 0) recv.child.kill();
    const r = await recv.done;
    assert.equal(s.code, 0, s.stderr);
    assert.equal(r.code, 0, r.stderr);
  };

  const byName = path.join(base, 'by-name');
  await run(byName, ['--names'], ['--names']);
  assert.deepEqual(await owners(byName), { known: [2001, 3001], unknown: [ids.bin, 3001], nameless: [54321, 54322] });

  // ferry's default (and --numeric-ids, and names asked by one end only): numbers.
  const numbers = { known: [ids.daemon, ids.sys], unknown: [ids.bin, ids.sys], nameless: [54321, 54322] };
  const byNumber = path.join(base, 'by-number');
  await run(byNumber, ['--names'], []);
  assert.deepEqual(await owners(byNumber), numbers);
  const numeric = path.join(base, 'numeric');
  await run(numeric, ['--names', '--numeric-ids'], ['--names']);
  assert.deepEqual(await owners(numeric), numbers);
});

test('owner names over ssh: ferry -o -g --names host:SRC/ DST maps the remote\'s names to the local ids', { timeout: 300_000 }, async (t) => {
  if (!isRoot) {
    t.skip('needs root (files of other users); CI runs as root');
    return;
  }
  if (!requireTools(t, 'sshd', 'ssh', 'ssh-keygen')) return;
  const { base, src, env, ids } = await namesFixture();
  const sshd = await startSshd();
  try {
    // Pull: the remote end sends the machine's names; this end (given its own names) receives.
    const ferry = (args: string[]): ReturnType<typeof runFerry> =>
      runFerry(['-e', sshd.sshCommand, '--remote-ferry', FERRY_BIN, '--progress=never', '-o', '-g', ...args], { env, timeoutMs: 120_000 });
    const pulled = path.join(base, 'pulled');
    const r = await ferry(['--names', `127.0.0.1:${src}/`, pulled]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await owners(pulled), { known: [2001, 3001], unknown: [ids.bin, 3001], nameless: [54321, 54322] });
    const plain = path.join(base, 'plain');
    const q = await ferry([`127.0.0.1:${src}/`, plain]);
    assert.equal(q.code, 0, q.stderr);
    assert.deepEqual(await owners(plain), { known: [ids.daemon, ids.sys], unknown: [ids.bin, ids.sys], nameless: [54321, 54322] });
  } finally {
    await sshd.stop();
  }
});

test('owner names: --names without -o/-g is refused with the reason (send, recv, ssh copy), not silently ignored', () => {
  for (const args of [
    ['send', '--names', '.', '127.0.0.1:1'],
    ['recv', '--names', '.', '--listen', '0'],
    ['--names', '.', 'nosuchhost.invalid:/x'],
  ]) {
    const r = spawnSync(FERRY_BIN, args, { encoding: 'utf8', env: { ...process.env, FERRY_SECRET: 'abcde-fghij-klmno-pqrst-uvwxy' }, timeout: 20_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /FERRY_E_USAGE: .*--names needs -o\/--owner or -g\/--group/);
  }
});
