/**
 * The image's HEALTHCHECK (Dockerfile): GET /healthz on the admin address the sidecar in this
 * container uses (config/admin-address.ts); exit 0 on a 200 within 3 s, else 1.
 *
 * A HEALTHCHECK cannot see flags on the container's command line (`--admin` there is invisible to
 * it): set the admin address in the config file or in BEARER_SIDECAR_ADMIN. Kubernetes ignores
 * HEALTHCHECK and uses the chart's probes.
 */
import { get } from 'node:http';
import { adminAddressToCall } from './config/admin-address.js';

const TIMEOUT_MS = 3_000;

const { host, port } = adminAddressToCall();
const request = get({ host, port, path: '/healthz', timeout: TIMEOUT_MS }, (response) => {
  response.resume();
  process.exit(response.statusCode === 200 ? 0 : 1);
});
request.on('timeout', () => request.destroy());
request.on('error', () => process.exit(1));
