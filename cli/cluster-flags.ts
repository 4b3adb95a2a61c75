/**
 * @module
 * The flags of the `ledge` commands that talk to the cluster's API directly (`ledge token`,
 * `ledge node`): the log level (warnings and errors only: the CLI's own chatter is not wanted on
 * stderr), `--kubeconfig` and `-n/--namespace` (CloudCore's namespace).
 */
import type { ConfigSpec } from '../shared/config/index.js';
import { logConfigFields } from '../shared/log/index.js';

/** The shared flags; `namespace` says what lives in CloudCore's namespace for this command. */
export function clusterCommandSpec(namespace: { default: string; description: string }) {
  return {
    ...logConfigFields,
    'log.level': { ...logConfigFields['log.level'], default: 'warn' },
    kubeconfig: {
      type: 'string',
      flag: 'kubeconfig',
      env: 'LEDGE_KUBECONFIG',
      optional: true,
      description: 'kubeconfig of the cluster (default: in-cluster service account, else $KUBECONFIG or ~/.kube/config)',
    },
    namespace: { type: 'string', flag: 'namespace', short: 'n', default: namespace.default, description: namespace.description },
  } as const satisfies ConfigSpec;
}
