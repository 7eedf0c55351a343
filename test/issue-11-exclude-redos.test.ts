/**
 * Issue #11, defect 5: exclude patterns with catastrophic backtracking.
 *
 * Globs used to be translated to a RegExp; `*a*a*a…*b` against a long name of 'a's
 * then backtracks through every way of placing the stars, which is exponential:
 * the walk (for `ferry copy --exclude`) and the receiver's --delete pass (for a
 * pattern sent by the peer; the receiver's cap of 16 wildcards did not help) sat
 * in one regex call for hours, with SIGTERM never handled. fs/exclude now runs an
 * automaton over all pattern positions at once, O(name × pattern).
 *
 * Every case that would hang before the fix runs in a child process with a kill
 * timer, so a regression fails in bounded time instead of hanging the suite.
 * A differential test keeps the old regex translation as the reference for the
 * meaning of every pattern on short inputs, where backtracking is harmless.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { compileExcludes } from '../src/fs/exclude.js';
import { startRecv, sendTo } from './support/net-harness.js';
import { FERRY_MAIN, REPO_ROOT, cleanupTmpDirs, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

/** Generous: the fixed matcher needs milliseconds, the regex needed longer than the universe has left. */
const KILL_MS = 30_000;

/** `*a*a…*a*b`: n stars. */
const pathological = (n: number): string => `${'*a'.repeat(n - 1)}*b`;
const longName = 'a'.repeat(250);

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  killed: boolean;
}

function runNode(args: string[], opts: { sigtermWhen?: () => Promise<void> } = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const kill = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, KILL_MS);
    let exited = false;
    void opts.sigtermWhen?.().then(() => {
      if (!exited) child.kill('SIGTERM');
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      exited = true;
      clearTimeout(kill);
      resolve({ code, signal, stdout, stderr, killed });
    });
  });
}

/** compileExcludes(patterns)(name, isDir) for each case, in a child process with a kill timer. */
async function matchInChild(patterns: string[], cases: Array<[string, boolean]>): Promise<boolean[]> {
  const mod = pathToFileURL(path.join(REPO_ROOT, 'dist/src/fs/exclude.js')).href;
  const script = `
    const { compileExcludes } = await import(${JSON.stringify(mod)});
    const f = compileExcludes(${JSON.stringify(patterns)});
    console.log(JSON.stringify(${JSON.stringify(cases)}.map(([name, isDir]) => f(name, isDir))));`;
  const r = await runNode(['--input-type=module', '-e', script]);
  assert.equal(r.killed, false, 'the match did not finish: killed after the timeout');
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as boolean[];
}

test('issue #11 ReDoS: *a*a*…*b against a 250-character name finishes (child process, kill timer)', async () => {
  for (const n of [16, 40, 200]) {
    const pat = pathological(n);
    const got = await matchInChild([pat, `/${pat}`, `**${pat}/`], [
      [longName, true],
      [`dir/${longName}`, false],
      [`${longName}b`, false],
      [`x/${longName}b`, true],
    ]);
    assert.deepEqual(got, [false, false, true, true], `${n} stars`);
  }
});

test('issue #11 ReDoS: other worst-case shapes (**, ?, classes, anchored **/) finish too', async () => {
  const got = await matchInChild(
    [`${'**a'.repeat(60)}**b`, `${'?*'.repeat(100)}c`, `${'[a-c]*'.repeat(100)}[!a]d`, `/${'a/**/'.repeat(60)}b`],
    [
      [`${'a/'.repeat(120)}a`, true],
      [`${'a'.repeat(300)}`, false],
      [`${'a'.repeat(300)}c`, false],
      [`${'a/'.repeat(100)}b`, false],
    ],
  );
  assert.deepEqual(got, [false, false, true, true]);
});

test('issue #11 ReDoS: ferry copy --delete --exclude <pathological> finishes', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await fsp.mkdir(path.join(src, 'sub'), { recursive: true });
  await fsp.writeFile(path.join(src, 'sub', longName), 'in the source');
  await fsp.writeFile(path.join(src, 'keep.txt'), 'k');
  await fsp.mkdir(path.join(dst, 'sub'), { recursive: true });
  await fsp.writeFile(path.join(dst, 'sub', `${longName}c`), 'extraneous, long name, not excluded');
  await fsp.writeFile(path.join(dst, 'sub', `${'a'.repeat(60)}b`), 'extraneous, excluded: kept');
  const r = await runNode([FERRY_MAIN, 'copy', '--progress=never', '--delete', '--exclude', pathological(40), `${src}/`, dst]);
  assert.equal(r.killed, false, 'ferry copy did not finish: killed after the timeout');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await fsp.readdir(path.join(dst, 'sub'))).sort(), [`${'a'.repeat(60)}b`, longName].sort());
  assert.equal(await fsp.readFile(path.join(dst, 'keep.txt'), 'utf8'), 'k');
});

test('issue #11 ReDoS: SIGTERM ends a ferry copy --exclude <pathological> (the event loop is never blocked)', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await fsp.mkdir(src);
  // Many long names: each one used to block the walk for good on its first exclude check.
  for (let i = 0; i < 2000; i++) await fsp.writeFile(path.join(src, `${'a'.repeat(200)}${i}`), 'x');
  const run = runNode([FERRY_MAIN, 'copy', '--progress=never', '--exclude', pathological(40), `${src}/`, dst], {
    // The signal goes once DST exists: ferry has installed its handlers and started the walk.
    sigtermWhen: async () => {
      for (let i = 0; i < 3000; i++) {
        if (await fsp.access(dst).then(() => true, () => false)) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  });
  const r = await run;
  assert.equal(r.killed, false, 'ferry copy ignored SIGTERM: killed after the timeout');
  // Ended by the signal (ferry's 130), or finished just before it (0): never stuck.
  assert.ok(r.code === 130 || r.code === 0, `exit ${r.code} ${r.signal}: ${r.stderr}`);
});

test('issue #11 ReDoS: a receiver given a pathological exclude (16 wildcards, the old cap) finishes --delete', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await fsp.mkdir(src);
  await fsp.writeFile(path.join(src, 'file.txt'), 'data');
  await fsp.mkdir(dst);
  await fsp.writeFile(path.join(dst, longName), 'extraneous: deleted');
  const recv = await startRecv(dst, [], {}, KILL_MS);
  const send = sendTo(`${src}/`, recv.port, ['--delete', '--exclude', pathological(16)], {}, KILL_MS);
  const [s, rv] = await Promise.all([send.done, recv.done]);
  assert.equal(rv.signal, null, `recv was killed (hung): ${rv.stderr}`);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(rv.code, 0, rv.stderr);
  assert.deepEqual(await fsp.readdir(dst), ['file.txt']);
});

// ---- the meaning of patterns: the old regex translation as the reference ----

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}

/** The RegExp translation fs/exclude used before issue #11 (fine for short inputs). */
function referenceGlobToRegexBody(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          out += '(?:.*/)?';
        } else out += '.*';
      } else out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else if (c === '\\' && i + 1 < glob.length) out += escapeRe(glob[++i]!);
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        out += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      let neg = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        neg = true;
        body = body.slice(1);
      }
      body = body.replace(/[\\\]^]/g, (m) => `\\${m}`);
      out += neg ? `[^/${body}]` : `[${body}]`;
      i = end;
    } else out += escapeRe(c);
  }
  return out;
}

function referenceExcludes(patterns: string[]): (p: string, isDir: boolean) => boolean {
  const rules = patterns.map((raw) => {
    let p = raw;
    let dirOnly = false;
    while (p.length > 1 && p.endsWith('/')) {
      dirOnly = true;
      p = p.slice(0, -1);
    }
    const anchored = p.startsWith('/');
    if (anchored) p = p.slice(1);
    const body = referenceGlobToRegexBody(p);
    return { re: new RegExp(anchored ? `^${body}$` : `^(?:.*/)?${body}$`, 's'), dirOnly };
  });
  return (rel, isDir) => rules.some((r) => !(r.dirOnly && !isDir) && r.re.test(rel));
}

/** xorshift32: a seeded generator, so a failure names its case and can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

test('issue #11: the new matcher agrees with the old regex translation (seeded differential, 20,000 cases)', () => {
  const rand = rng(0x11_05);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const patAtoms = ['a', 'b', '.', '/', '*', '**', '**/', '?', '[ab]', '[!a]', '[^b]', '[a-c]', '[]a]', '[-a]', '[a-]', '\\*', '\\', '[', '[/]', '+', '(', '$'];
  const textAtoms = ['a', 'b', 'c', '.', '/', '*', '\\', '[', ']', '-', '+', '(', '$', '\n'];
  for (let n = 0; n < 20_000; n++) {
    const pats: string[] = [];
    const np = 1 + Math.floor(rand() * 2);
    for (let k = 0; k < np; k++) {
      let p = rand() < 0.3 ? '/' : '';
      const len = 1 + Math.floor(rand() * 6);
      for (let j = 0; j < len; j++) p += pick(patAtoms);
      if (rand() < 0.2) p += '/';
      if (p.replace(/^\/|\/+$/g, '') === '') p = 'a';
      pats.push(p);
    }
    let text = '';
    const tl = Math.floor(rand() * 10);
    for (let j = 0; j < tl; j++) text += pick(textAtoms);
    if (n % 3 === 0) {
      // Over 30 tokens: the other simulation (one byte per state instead of bits).
      const pad = 'q'.repeat(31);
      for (let k = 0; k < pats.length; k++) pats[k] = pats[k]!.startsWith('/') ? `/${pad}${pats[k]!.slice(1)}` : `${pad}${pats[k]}`;
      text = rand() < 0.5 ? pad + text : `${pick(['', 'x/', 'a/b/'])}${pad}${text}`;
    }
    const isDir = rand() < 0.5;
    const want = referenceExcludes(pats)(text, isDir);
    const got = compileExcludes(pats)(text, isDir);
    assert.equal(got, want, `case ${n}: patterns ${JSON.stringify(pats)} on ${JSON.stringify(text)} (dir ${isDir})`);
  }
});
