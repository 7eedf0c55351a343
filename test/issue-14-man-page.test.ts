/**
 * Issue #14: a man page, ferry.1, generated from the same texts as `--help`
 * (src/cli/man.ts, written by scripts/gen-man.mjs at build), committed up to date, and
 * installed with the package (package.json "man", "files").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { renderManPage } from '../src/cli/man.js';
import { COPY_HELP, HELP } from '../src/cli/help.js';
import { RECV_HELP } from '../src/cli/recv-command.js';
import { SEND_HELP } from '../src/cli/send-command.js';
import { SSH_HELP } from '../src/cli/ssh-command.js';
import { findTool } from './support/tools.js';
import { REPO_ROOT } from './support/tree.js';

const PAGE = path.join(REPO_ROOT, 'man/ferry.1');

test('man/ferry.1 is what the help texts make (run npm run build after changing them)', () => {
  assert.equal(readFileSync(PAGE, 'utf8'), renderManPage());
});

test('the package installs the page', () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { man?: string | string[]; files?: string[] };
  assert.deepEqual([pkg.man].flat(), ['./man/ferry.1']);
  assert.ok(pkg.files?.includes('man/'), 'package.json "files" lacks man/');
});

test('every option line of every --help is in the page', () => {
  const page = renderManPage().replace(/\\-/g, '-').replace(/\\\(em/g, '—');
  for (const text of [HELP, COPY_HELP, SEND_HELP, RECV_HELP, SSH_HELP]) {
    for (const line of text.split('\n').filter((l) => /^\s+--?[a-zA-Z]/.test(l))) {
      assert.ok(page.includes(line.trim()), `missing from ferry.1: ${line.trim()}`);
    }
  }
});

test('man renders it without warnings', { skip: findTool('groff') ? false : 'needs groff' }, () => {
  const r = spawnSync('groff', ['-ww', '-man', '-z', PAGE], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
});
