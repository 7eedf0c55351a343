/**
 * Issue #13, --via-ssh: ssh's AES-GCM cipher goes first when the user has not chosen
 * ciphers and the CPU has AES instructions (modes/ssh-cipher.ts). What must hold:
 * - the rule itself: the effective list must equal OpenSSH's built-in default, the
 *   new list is the same ciphers with aes128-gcm@openssh.com first;
 * - against a real sshd: a --via-ssh session's ssh gets `-c` with that list; a user's
 *   own `-c` (or FERRY_SSH_CIPHER=keep) is left alone and the direct mode runs no
 *   `ssh -G` at all; the transfer arrives intact either way.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PREFERRED_CIPHER, ciphersOf, cpuHasAes, preferredCiphers } from '../src/modes/ssh-cipher.js';
import { startSshd, shellQuote, type Sshd } from './support/sshd.js';
import { findTool, isCI } from './support/tools.js';
import { FERRY_BIN, compareTrees, makeTree, runFerry, tmpDir } from './support/tree.js';

const DEFAULT = ['chacha20-poly1305@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com'];

test('the rule: only an unchanged default list is reordered, with the GCM cipher first and nothing else changed', () => {
  assert.deepEqual(preferredCiphers(DEFAULT, DEFAULT), [PREFERRED_CIPHER, ...DEFAULT.filter((c) => c !== PREFERRED_CIPHER)]);
  assert.equal(preferredCiphers(['aes256-ctr'], DEFAULT), undefined, 'the user chose');
  assert.equal(preferredCiphers([...DEFAULT].reverse(), DEFAULT), undefined, 'the user reordered');
  assert.equal(preferredCiphers([PREFERRED_CIPHER, 'aes256-ctr'], [PREFERRED_CIPHER, 'aes256-ctr']), undefined, 'first already');
  assert.equal(preferredCiphers(['chacha20-poly1305@openssh.com'], ['chacha20-poly1305@openssh.com']), undefined, 'not offered by this ssh');
  assert.equal(preferredCiphers(undefined, DEFAULT), undefined, 'ssh -G failed');
  assert.deepEqual(ciphersOf(`user root\nciphers ${DEFAULT.join(',')}\nmacs x\n`), DEFAULT);
  assert.equal(ciphersOf('user root\n'), undefined);
  assert.equal(cpuHasAes('processor\t: 0\nflags\t\t: fpu sse2 aes avx2\n'), true);
  assert.equal(cpuHasAes('processor\t: 0\nflags\t\t: fpu sse2 avx2 vaes_x\n'), false);
  assert.equal(cpuHasAes('Features\t: fp asimd aes pmull sha1\n'), true);
});

const skip = (findTool('sshd') === undefined || findTool('ssh') === undefined) && !isCI() ? 'needs sshd and ssh' : false;

describe('--via-ssh cipher against a real sshd', { skip, timeout: 300_000 }, () => {
  let sshd: Sshd;
  let base: string;
  let log: string;
  let wrapper: string;
  before(async () => {
    sshd = await startSshd();
    base = await tmpDir();
    log = path.join(base, 'ssh.log');
    // An `ssh` that records its arguments: ferry only reorders for a command named ssh.
    wrapper = path.join(base, 'ssh');
    writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> ${shellQuote(log)}\nexec ${shellQuote(findTool('ssh')!)} "$@"\n`);
    chmodSync(wrapper, 0o755);
    await makeTree(path.join(base, 'src'), { 'a.txt': 'hello', 'b.bin': Buffer.alloc(200_000, 3) });
  });
  after(async () => {
    await sshd?.stop();
  });

  const run = async (name: string, rshExtra: string[], args: string[], env: Record<string, string> = {}): Promise<string[]> => {
    writeFileSync(log, '');
    const rsh = [wrapper, ...rshExtra, ...sshd.sshArgs].map(shellQuote).join(' ');
    const r = await runFerry(['-e', rsh, '--remote-ferry', FERRY_BIN, '--progress=never', ...args, path.join(base, 'src'), `127.0.0.1:${path.join(base, name)}`], { env, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(path.join(base, 'src'), path.join(base, name, 'src')), []);
    return readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
  };
  const session = (lines: string[]): string => {
    const s = lines.filter((l) => l.endsWith('--server'));
    assert.equal(s.length, 1, `one ssh session: ${JSON.stringify(lines)}`);
    return s[0]!;
  };

  test('--via-ssh with no cipher chosen: aes128-gcm@openssh.com first (on a CPU with AES)', async () => {
    const s = session(await run('plain', [], ['--via-ssh']));
    if (cpuHasAes()) assert.match(s, new RegExp(`-c ${PREFERRED_CIPHER},\\S*chacha20`));
    else assert.doesNotMatch(s, / -c /);
  });

  test('a cipher the user chose, FERRY_SSH_CIPHER=keep, and the direct mode are left alone', async () => {
    const own = session(await run('own', ['-c', 'aes256-ctr'], ['--via-ssh']));
    assert.doesNotMatch(own, new RegExp(PREFERRED_CIPHER));
    const keep = session(await run('keep', [], ['--via-ssh'], { FERRY_SSH_CIPHER: 'keep' }));
    assert.doesNotMatch(keep, / -c /);
    const direct = await run('direct', [], []);
    assert.doesNotMatch(session(direct), / -c /);
    assert.equal(direct.filter((l) => / -G /.test(l)).length, 0, 'no ssh -G for the direct mode');
  });
});
