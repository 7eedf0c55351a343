/**
 * Runs the kTLS interop tests inside the kernel lab (scripts/kernel-lab.sh: a Debian
 * kernel with the tls module under qemu TCG, the host's / over 9p) and asserts that
 * they all ran and passed there. The host kernel has no kTLS, so this is the only
 * place the kernel data path is exercised.
 *
 * Outside CI it skips, with the reason, when the lab cannot run here (not Linux, not
 * root, no qemu, or the kernel download/initramfs build fails); with CI=true it must
 * run and pass. Slow: about 10 s to boot plus the in-lab tests under emulation (about
 * 30-40 s in all on the development machines); the first run also downloads the
 * kernel (about 70 MB) unless `scripts/kernel-lab.sh --prepare` ran before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const labScript = `${root}scripts/kernel-lab.sh`;
const inCi = process.env.CI === 'true';
const labTests = existsSync(`${root}dist/test/lab`)
  ? readdirSync(`${root}dist/test/lab`).filter((f) => f.endsWith('.lab.js')).sort().map((f) => `dist/test/lab/${f}`)
  : [];

function unavailable(): string | false {
  if (process.platform !== 'linux') return `the kernel lab needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'the kernel lab needs root (9p passthrough share of /)';
  const q = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' });
  if (q.status !== 0) return 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)';
  return false;
}

/** Runs a command, collecting its output; killed (the lab script then kills qemu) on abort. */
function run(args: string[], signal: AbortSignal, env: NodeJS.ProcessEnv): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', args, { cwd: root, env, signal, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, out }));
  });
}

const tail = (s: string, lines = 60): string => s.split('\n').slice(-lines).join('\n');

test('kTLS interop tests pass inside the kernel lab', { timeout: 900_000 }, async (t) => {
  if (process.env.FERRY_NATIVE === '0') {
    // kTLS is set up through the native addon; the suite's native pass runs the lab
    // (and there the userspace records it checks against the kernel are the addon's).
    t.skip('FERRY_NATIVE=0: kTLS needs the native addon; the lab runs in the native pass');
    return;
  }
  const why = unavailable();
  if (why) {
    assert.ok(!inCi, `CI=true but ${why}`);
    t.skip(why);
    return;
  }
  assert.ok(labTests.length > 0, 'no compiled lab tests under dist/test/lab (run tsc first)');
  const env = { ...process.env, FERRY_LAB_TIMEOUT: '600' };

  const prep = await run([labScript, '--prepare'], t.signal, env);
  if (prep.status !== 0) {
    assert.ok(!inCi, `CI=true but the kernel lab could not be prepared:\n${tail(prep.out)}`);
    t.skip(`kernel lab unavailable: ${tail(prep.out, 3).trim().replace(/\n/g, ' | ')}`);
    return;
  }

  const r = await run([labScript, '--', process.execPath, '--test', '--test-reporter=tap', ...labTests], t.signal, env);
  // The failing subtests' reports first (TAP "not ok" and its YAML block), then the end of the run.
  const failures = r.out.split('\n').reduce<{ keep: boolean; out: string[] }>((a, l) => {
    if (/^\s*not ok /.test(l)) a.keep = true;
    else if (/^\s*(ok |# Subtest)/.test(l)) a.keep = false;
    if (a.keep) a.out.push(l);
    return a;
  }, { keep: false, out: [] }).out.join('\n');
  assert.equal(r.status, 0, `the lab run failed (exit ${String(r.status)}):\n${failures}\n…\n${tail(r.out)}`);
  // The lab really ran the tests (with kTLS) rather than skipping them.
  assert.match(r.out, /ferry-lab: kernel \S+, tls ulp: .*\btls\b/);
  const count = (name: string): number => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(r.out)?.[1] ?? NaN);
  assert.ok(count('pass') >= 10, `expected the in-lab tests to pass, got:\n${tail(r.out)}`);
  assert.equal(count('fail'), 0);
  assert.equal(count('skipped'), 0, 'in-lab tests skipped (FERRY_IN_LAB not seen?)');
  assert.equal(count('cancelled'), 0);
});
