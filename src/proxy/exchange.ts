import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { ReleaseSlot, SlotWait } from './connection-slots.js';
import type { ReplayableBody } from './replayable-body.js';
import type { ProxySpan, UpstreamLeg } from '../util/tracing.js';
import type { UpstreamAccount } from './upstream.js';

/*
 * What a client carries through the passes of the data plane (forward.ts, upgrade-entry.ts):
 * one record per client, filled in as it goes, so no pass allocates more than its own work.
 */

/** One client request, from its arrival to its end, however it ends. */
export interface InboundRequest {
  req: IncomingMessage;
  res: ServerResponse;
  started: number;
  /** Once routed (refusals before routing are counted as unrouted). */
  account: UpstreamAccount | undefined;
  /** Once a token is in hand and the request goes upstream. */
  exchange: Exchange | undefined;
  /** R9: it is this request's turn on its client connection (pipelined ones wait for theirs). */
  hasTurn: boolean;
  /** R10: the upstream connection slot it holds, from dispatch to its end (a replay reuses it). */
  slot: ReleaseSlot | undefined;
  /** R10: waiting for a slot. */
  slotWait: SlotWait | undefined;
  /** H3: its span, when tracing is on. */
  span: ProxySpan | undefined;
}

/** One client request and what it has led to upstream. */
export interface Exchange {
  inbound: InboundRequest;
  req: IncomingMessage;
  res: ServerResponse;
  account: UpstreamAccount;
  targetPath: string;
  /** The upstream request in progress (the first, a stale-socket retry, or the replay). */
  upstream: { abort(): void } | undefined;
  /** H3: the span of that upstream request, when tracing is on. */
  leg: UpstreamLeg | undefined;
  /** The request body as read and kept for a replay; undefined when the request declared none. */
  body: ReplayableBody | undefined;
  retriedStaleSocket: boolean;
  /** E4: sent again once with the upstream's DPoP nonce. */
  nonceRetried?: boolean;
}

/** A client on a raw socket (an upgrade, a CONNECT), from its arrival to its answer. */
export interface RawClient {
  socket: Duplex;
  started: number;
  /** Once routed. */
  account: UpstreamAccount | undefined;
}

/** A request can be sent again when it had no body, or its body is whole in hand within the bound. */
export function replayable(exchange: Exchange): boolean {
  return exchange.body === undefined || exchange.body.replayable();
}

/** A request head that announces a body: Content-Length above 0, or any Transfer-Encoding. */
export function declaresBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

export function secondsSince(started: number): number {
  return (performance.now() - started) / 1000;
}
