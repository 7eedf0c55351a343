/**
 * `noop`: the destination is already up to date (seeded with cp -a, which keeps
 * mtimes), cold cache: how fast does a re-run find out there is nothing to do?
 * This is rsync's home ground, so rsync -a is the reference.
 */
import type { Suite } from '../suite.js';
import { FERRY_BIN, commandTool } from '../tools.js';

export const noopSuite: Suite = {
  name: 'noop',
  group: 'noop',
  title: 'local re-run, destination already up to date, cold cache',
  references: ['rsync -a'],
  destination: 'uptodate',
  datasets: ({ quick }) => (quick ? ['ml_small'] : ['ml_small', 'ml_large', 'ml_images', 'big']),
  async tools() {
    return [
      commandTool('ferry copy', [], (src, dst) => [FERRY_BIN, 'copy', '--progress=never', `${src}/`, `${dst}/`]),
      commandTool('rsync -a', ['rsync'], (src, dst) => ['rsync', '-a', `${src}/`, `${dst}/`]),
    ];
  },
};
