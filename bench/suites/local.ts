/**
 * `local`: copy a tree to a fresh directory on the same disk, cold cache.
 * ferry copy against the two tools people use for this, cp -r (the reference,
 * as in the uring-sync README) and rsync -a, and the seed's own C++ tool uring-sync
 * (io_uring; built by ../shared/peers/build-uring-sync.sh, skipped when absent).
 */
import type { Suite } from '../suite.js';
import { FERRY_BIN, commandTool } from '../tools.js';

export const localSuite: Suite = {
  name: 'local',
  group: 'local',
  title: 'local copy, fresh destination, cold cache',
  references: ['cp -r', 'uring-sync'],
  destination: 'fresh',
  datasets: ({ quick }) => (quick ? ['ml_small', 'big_quick'] : ['ml_small', 'ml_large', 'ml_images', 'big']),
  async tools() {
    return [
      commandTool('ferry copy', [], (src, dst) => [FERRY_BIN, 'copy', '--progress=never', `${src}/`, `${dst}/`]),
      commandTool('cp -r', ['cp'], (src, dst) => ['cp', '-r', src, dst]),
      commandTool('rsync -a', ['rsync'], (src, dst) => ['rsync', '-a', `${src}/`, `${dst}/`]),
      // uring-sync copies the contents of SRC into DST (like rsync's SRC/).
      commandTool('uring-sync', ['uring-sync'], (src, dst) => ['uring-sync', src, dst]),
    ];
  },
};
