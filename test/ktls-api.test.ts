/**
 * kTLS API behaviour on a host without kTLS (the development machines' kernel has no
 * CONFIG_TLS): support is reported unavailable with a reason, `--ktls=on` fails with
 * FERRY_E_KTLS, enableKtls refuses cleanly and leaves the socket usable, the addon's
 * setsockopt calls reach the kernel and report its errno, and the install script never
 * fails. The kTLS data path itself is tested inside the kernel lab
 * (test/ktls-lab.test.ts → test/lab/ktls-interop.lab.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, connect, Socket, type Server } from 'node:net';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { isFerryError } from '../src/core/errors.js';
import { decideKtls, enableKtls, kernelCryptoFields, ktlsSupport } from '../src/secure/ktls.js';
import { NATIVE_ABI } from '../src/native/index.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const addonPath = `${root}native/build/Release/ferry_native.node`;
const nativeOff = process.env.FERRY_NATIVE === '0';
const ulps = (() => {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_available_ulp', 'utf8').trim().split(/\s+/);
  } catch {
    return [];
  }
})();
const hostHasKtls = ulps.includes('tls');
const noKtlsHere = hostHasKtls ? 'this kernel has the tls ULP; the no-kTLS behaviour is covered by the FERRY_NATIVE_ADDON test' : false;
const inCi = process.env.CI === 'true';
const noAddon = nativeOff ? 'FERRY_NATIVE=0: no native code in this pass' : !existsSync(addonPath) && !inCi ? `addon not built (${addonPath}); no C compiler?` : false;

const secret = { key: Buffer.alloc(16, 1), iv: Buffer.alloc(12, 2), seq: 0n };

async function pair(): Promise<{ server: Server; a: Socket; b: Socket }> {
  let resolveB!: (s: Socket) => void;
  const bP = new Promise<Socket>((r) => (resolveB = r));
  const server = createServer((s) => resolveB(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  const a = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
  return { server, a, b: await bP };
}

function close({ server, a, b }: { server: Server; a: Socket; b: Socket }): Promise<void> {
  a.destroy();
  b.destroy();
  return new Promise((r) => server.close(() => r()));
}

test('kernelCryptoFields splits the 12-byte IV into salt and iv and encodes seq big-endian', () => {
  const iv = Buffer.from('000102030405060708090a0b', 'hex');
  const f = kernelCryptoFields({ key: Buffer.alloc(16, 0xaa), iv, seq: 0x0102030405060708n });
  assert.equal(f.salt.toString('hex'), '00010203');
  assert.equal(f.iv.toString('hex'), '0405060708090a0b');
  assert.equal(f.recSeq.toString('hex'), '0102030405060708');
  assert.equal(f.key.toString('hex'), 'aa'.repeat(16));
  // Copies: wiping them (as enableKtls does with the key) leaves the caller's secret intact.
  f.key.fill(0);
  f.salt.fill(0);
  assert.equal(iv[0], 0x00);
  assert.equal(iv[1], 0x01);
  assert.equal(kernelCryptoFields({ key: Buffer.alloc(16), iv, seq: (1n << 64n) - 1n }).recSeq.toString('hex'), 'ff'.repeat(8));
});

test('kernelCryptoFields rejects wrong key/IV sizes and an out-of-range seq', () => {
  assert.throws(() => kernelCryptoFields({ key: Buffer.alloc(32), iv: Buffer.alloc(12), seq: 0n }), /key must be 16 bytes/);
  assert.throws(() => kernelCryptoFields({ key: Buffer.alloc(16), iv: Buffer.alloc(8), seq: 0n }), /IV must be 12 bytes/);
  assert.throws(() => kernelCryptoFields({ key: Buffer.alloc(16), iv: Buffer.alloc(12), seq: 1n << 64n }), /out of range/);
  assert.throws(() => kernelCryptoFields({ key: Buffer.alloc(16), iv: Buffer.alloc(12), seq: -1n }), /out of range/);
});

test('ktlsSupport reports the missing tls ULP with a reason', { skip: noKtlsHere }, () => {
  const s = ktlsSupport();
  assert.equal(s.available, false);
  if (nativeOff) {
    assert.match(s.reason, /native code disabled \(FERRY_NATIVE=0\)/);
  } else if (existsSync(addonPath)) {
    assert.match(s.reason, /the kernel has no tls ULP \(\/proc\/sys\/net\/ipv4\/tcp_available_ulp lists /);
  } else {
    assert.match(s.reason, /addon is not built/);
  }
});

test('--ktls=on fails with FERRY_E_KTLS where kTLS is unavailable; auto and off fall back', { skip: noKtlsHere }, () => {
  assert.throws(
    () => decideKtls('on'),
    (e: unknown) => isFerryError(e, 'FERRY_E_KTLS') && /^--ktls=on but kTLS is not available: /.test(e.message),
  );
  const auto = decideKtls('auto');
  assert.equal(auto.use, false);
  assert.match(auto.reason, /^userspace TLS: /);
  assert.deepEqual(decideKtls('off'), { use: false, reason: 'kTLS disabled (--ktls=off)' });
});

test('without the addon (FERRY_NATIVE_ADDON points nowhere) support is unavailable and says why', () => {
  const script = `import('${root}dist/src/secure/ktls.js').then((m) => {
    let onError = '';
    try { m.decideKtls('on'); } catch (e) { onError = e.code + ': ' + e.message; }
    console.log(JSON.stringify({ support: m.ktlsSupport(), auto: m.decideKtls('auto'), onError }));
  })`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, FERRY_NATIVE: '1', FERRY_NATIVE_ADDON: '/nonexistent/ferry_native.node' },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { support: { available: boolean; reason: string }; auto: { use: boolean }; onError: string };
  assert.equal(out.support.available, false);
  assert.match(out.support.reason, /the native addon is not built \(\/nonexistent\/ferry_native\.node not found/);
  assert.equal(out.auto.use, false);
  assert.match(out.onError, /^FERRY_E_KTLS: --ktls=on but kTLS is not available: the native addon is not built/);
});

test('enableKtls on a socket without a file descriptor throws FERRY_E_KTLS', () => {
  const s = new Socket();
  assert.throws(
    () => enableKtls(s, 'tx', secret),
    (e: unknown) => isFerryError(e, 'FERRY_E_KTLS') && /cannot enable kTLS TX: the socket has no file descriptor/.test(e.message),
  );
  s.destroy();
});

test('enableKtls where the kernel has no tls ULP throws FERRY_E_KTLS and the socket still carries bytes', { skip: noKtlsHere, timeout: 10_000 }, async () => {
  const p = await pair();
  try {
    for (const dir of ['tx', 'rx'] as const) {
      assert.throws(
        () => enableKtls(p.a, dir, secret),
        (e: unknown) =>
          isFerryError(e, 'FERRY_E_KTLS') &&
          e.message.startsWith(`127.0.0.1:${String(p.a.remotePort)}: cannot enable kTLS ${dir.toUpperCase()}: `) &&
          /tls ULP|addon|FERRY_NATIVE=0/.test(e.message),
      );
    }
    const got = new Promise<string>((r) => p.b.once('data', (d: Buffer) => r(d.toString())));
    p.a.write('still plain TCP');
    assert.equal(await got, 'still plain TCP');
  } finally {
    await close(p);
  }
});

test('the addon reaches the kernel: TCP_ULP "tls" fails with ENOENT, SOL_TLS with ENOPROTOOPT', { skip: noKtlsHere || noAddon, timeout: 10_000 }, async () => {
  const addon = createRequire(import.meta.url)(addonPath) as {
    abi: number;
    setUlp(fd: number): number;
    getUlp(fd: number): string;
    setCrypto(fd: number, dir: number, key: Buffer, salt: Buffer, iv: Buffer, seq: Buffer): number;
  };
  assert.equal(addon.abi, NATIVE_ABI);
  const p = await pair();
  try {
    const fd = (p.a as unknown as { _handle: { fd: number } })._handle.fd;
    assert.ok(fd >= 0);
    assert.equal(addon.getUlp(fd), '');
    assert.equal(addon.setUlp(fd), osConstants.errno.ENOENT);
    assert.equal(addon.setCrypto(fd, 1, Buffer.alloc(16), Buffer.alloc(4), Buffer.alloc(8), Buffer.alloc(8)), osConstants.errno.ENOPROTOOPT);
    // A closed descriptor is an errno, not a crash.
    assert.equal(addon.setUlp(1_000_000), osConstants.errno.EBADF);
    // Argument checks throw TypeError before any syscall.
    assert.throws(() => addon.setUlp(-1), TypeError);
    assert.throws(() => addon.setCrypto(fd, 1, Buffer.alloc(15), Buffer.alloc(4), Buffer.alloc(8), Buffer.alloc(8)), TypeError);
    assert.throws(() => addon.setCrypto(fd, 3, Buffer.alloc(16), Buffer.alloc(4), Buffer.alloc(8), Buffer.alloc(8)), TypeError);
  } finally {
    await close(p);
  }
});

test('build-native never fails the install and says what happened in one line', { timeout: 30_000 }, () => {
  const noCc = spawnSync(process.execPath, [`${root}scripts/build-native.mjs`], {
    env: { ...process.env, CC: '/nonexistent/cc' },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(noCc.status, 0);
  assert.match(noCc.stdout, /^ferry: native addon: not built \(\/nonexistent\/cc: ENOENT\); TypeScript fallbacks only\n$/);
  const skipped = spawnSync(process.execPath, [`${root}scripts/build-native.mjs`], {
    env: { ...process.env, FERRY_SKIP_NATIVE: '1' },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(skipped.status, 0);
  assert.equal(skipped.stdout, 'ferry: native addon: skipped (FERRY_SKIP_NATIVE=1); TypeScript fallbacks only\n');
});
