/**
 * Issue #11, defect 2: online guessing without a throttle. The server sends its key
 * confirmation (mac_s) before the client proves anything, so a client can check one
 * guess against mac_s and hang up without sending its own MAC. That used to end as a
 * connection error: no back-off, not counted in --max-auth-failures, so a short
 * secret fell in minutes. Any handshake that got past the server's confirmation
 * without a valid client MAC is a failed guess.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import { cleanupTmpDirs, tmpDir } from './support/tree.js';
import { SECRET, connectFrom, guessAndHangUp, startListener, until, within } from './support/listener.js';

after(cleanupTmpDirs);

test('a client that reads the server confirmation and hangs up is an authentication failure, counted in --max-auth-failures', async () => {
  const dst = path.join(await tmpDir('ferry-issue11-'), 'dst');
  const l = await startListener(dst, { keepServing: false, maxAuthFailures: 2, authBackoffMs: 10 });
  try {
    // The attack works as described: mac_s tells the guesser whether it was right...
    const first = await guessAndHangUp(l.port, 'guess-number-one');
    assert.deepEqual(first, { confirmed: true, right: false });
    const second = await guessAndHangUp(l.port, SECRET, '127.0.0.3');
    assert.deepEqual(second, { confirmed: true, right: true }, 'the right guess checks out against mac_s');
    // ...but each one is now a failed authentication, and two of them end a waiting recv (exit 3).
    const out = await within(l.outcome, 10_000, 'recv stopping after --max-auth-failures hang-ups');
    assert.ok(isFerryError(out.authError, 'FERRY_E_AUTH'), `expected FERRY_E_AUTH, got ${String(out.authError)}`);
    assert.equal(out.sessions.length, 0);
    const failed = l.warnings.filter((w) => /failed attempt/.test(w));
    assert.equal(failed.length, 2, l.warnings.join('\n'));
    assert.match(failed[0]!, /FERRY_E_AUTH|authentication failed/);
    assert.match(failed[0]!, /counted as a failed guess/);
    assert.match(failed[0]!, /failed attempt 1 of 2/);
  } finally {
    await l.stop();
  }
});

test('a client that reads the server confirmation and hangs up is backed off: its next handshake waits', async () => {
  const dst = path.join(await tmpDir('ferry-issue11-'), 'dst');
  const l = await startListener(dst, { authBackoffMs: 60_000 });
  try {
    assert.deepEqual(await guessAndHangUp(l.port, 'guess-number-one', '127.0.0.2'), { confirmed: true, right: false });
    await until(() => l.warnings.some((w) => /failed attempt 1/.test(w)), 5_000, 'the hang-up being counted');
    assert.match(l.warnings.join('\n'), /next handshake from 127\.0\.0\.2 waits 60\.0 s/);
    // The guesser's next connection gets nothing, not even the server's hello...
    let fromGuesser = 0;
    const again = await connectFrom(l.port, '127.0.0.2');
    again.on('data', (c: Buffer) => (fromGuesser += c.length));
    again.on('error', () => undefined);
    // ...while a connection from elsewhere, opened after it, is served at once.
    const other = await connectFrom(l.port, '127.0.0.3');
    other.on('error', () => undefined);
    await within(new Promise((r) => other.once('data', r)), 5_000, 'the server hello to another address');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(fromGuesser, 0, 'the guesser is held back');
    again.destroy();
    other.destroy();
  } finally {
    await l.stop();
  }
});
