import type { IncomingMessage } from 'node:http';
import type { HostOriginRules } from './host-origin.js';
import type { InboundPolicy } from './inbound.js';
import { joinUpstreamPath, pathProblem, splitOriginForm, targetProblem, type SplitTarget } from './paths.js';
import type { Refusal } from './refusals.js';
import type { Router } from './route.js';
import { connectionHeaderProblem, type UpstreamAccount } from './upstream.js';

/** What admission needs to know: who may come in, and where each request goes. */
export interface AdmissionRules {
  router: Router<UpstreamAccount>;
  inbound: InboundPolicy;
  /** S1: the Host rule (DNS rebinding) and the Origin rule (web pages). */
  hostOrigin: HostOriginRules;
  /** The main data-plane listener is a unix socket (clients have no address). */
  unixSocket: boolean;
}

/** An admitted request: its account and the exact upstream path (§8), or why it is refused. */
export type Admission = { account: UpstreamAccount; targetPath: string } | Refusal;

/**
 * The admission passes, in order, for HTTP requests and WebSocket upgrades alike (F2): the first
 * refusal ends the request before any token or upstream is touched.
 */
export function admit(
  req: IncomingMessage,
  listenerAccount: UpstreamAccount | undefined,
  rules: AdmissionRules,
): Admission {
  const forbidden = checkInbound(req, listenerAccount, rules);
  if (forbidden !== undefined) return forbidden;
  const target = checkRequestTarget(req);
  if ('code' in target) return target;
  const badConnection = checkConnectionHeader(req);
  if (badConnection !== undefined) return badConnection;
  return routeToAccount(req, target, listenerAccount, rules.router);
}

/**
 * Inbound check: the client address is in inbound.allow, X-Sidecar-Key matches (F5), the Host is
 * one this sidecar answers to and no web page sent the request (S1), else 403.
 */
function checkInbound(
  req: IncomingMessage,
  listenerAccount: UpstreamAccount | undefined,
  rules: AdmissionRules,
): Refusal | undefined {
  const forbidden =
    rules.inbound.check(req, listenerAccount === undefined && rules.unixSocket) ??
    rules.hostOrigin.problem(req.headers);
  return forbidden === undefined ? undefined : { code: 'forbidden', message: forbidden };
}

/** Request-target and path rules (F3, §8): origin-form only, no fragment, no dot segments or encoded separators, else 400. */
function checkRequestTarget(req: IncomingMessage): SplitTarget | Refusal {
  const target = splitOriginForm(req.url ?? '');
  if (target === undefined)
    return {
      code: 'bad_request',
      message: 'only origin-form request targets (/path) are accepted: bearer-sidecar is not a forward proxy',
    };
  const problem = targetProblem(req.url ?? '') ?? pathProblem(target.path);
  return problem === undefined ? target : { code: 'bad_request', message: problem };
}

/** Connection header: it may not name a framing header (Content-Length, Transfer-Encoding, Host: smuggling), else 400. */
function checkConnectionHeader(req: IncomingMessage): Refusal | undefined {
  const problem = connectionHeaderProblem(req.headers.connection);
  return problem === undefined ? undefined : { code: 'bad_request', message: problem };
}

/** Route: the account (docs/contract.md §3 precedence) and the upstream path joined as strings (§8), else 404. */
function routeToAccount(
  req: IncomingMessage,
  target: SplitTarget,
  listenerAccount: UpstreamAccount | undefined,
  router: Router<UpstreamAccount>,
): Admission {
  const routed = router.route(req, target.path, listenerAccount);
  if ('error' in routed) return { code: 'no_route', message: routed.error };
  return { account: routed.account, targetPath: joinUpstreamPath(routed.account.basePath, routed.rest) + target.query };
}
