import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from '../util/node-http.js';
import { closeServer, listen } from '../util/http-server.js';
import type { Logger } from '../util/logger.js';
import { scrubServerText } from '../util/scrub.js';
import { formatDuration } from '../util/duration.js';
import { SidecarError } from '../util/errors.js';

/*
 * The loopback redirect listener of `bearer-sidecar authorize` (RFC 8252 §7.3): it waits for the
 * one redirect that carries our state and hands back its code, or the authorization server's error.
 */

/** The authorization did not complete (denied, timed out, exchange rejected): the CLI exits 1. */
export class AuthorizeError extends SidecarError {
  constructor(message: string) {
    super('BS_ERR_AUTHORIZE', message);
  }
}

export const REDIRECT_PATH = '/callback';

export interface RedirectListener {
  redirectUri: string;
  /** Resolves with the code of the first redirect whose state matches; rejects on an error answer or timeout. */
  code(timeoutMs: number): Promise<string>;
  close(): Promise<void>;
}

type RedirectOutcome = { code: string } | { error: Error };

/** RFC 8252 §7.3: a loopback IP redirect on 127.0.0.1 (not "localhost", which may resolve elsewhere). */
export async function startRedirectListener(port: number, state: string, logger: Logger): Promise<RedirectListener> {
  let settle: { resolve(code: string): void; reject(error: Error): void } | undefined;
  let outcome: RedirectOutcome | undefined;
  const finish = (result: RedirectOutcome) => {
    if (outcome !== undefined) return;
    outcome = result;
    if (settle === undefined) return;
    if ('code' in result) settle.resolve(result.code);
    else settle.reject(result.error);
  };
  const server = createServer((req, res) =>
    answerRedirect(req, res, { state, logger, answered: () => outcome !== undefined, finish }),
  );
  await listen(server, { host: '127.0.0.1', port });
  const address = server.address();
  const boundPort = typeof address === 'object' && address !== null ? address.port : port;
  return {
    redirectUri: `http://127.0.0.1:${boundPort}${REDIRECT_PATH}`,
    code(timeoutMs) {
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => finish({ error: new AuthorizeError(`no redirect came back within ${formatDuration(timeoutMs)}`) }),
          timeoutMs,
        );
        settle = {
          resolve: (code) => {
            clearTimeout(timer);
            resolve(code);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        };
        if (outcome !== undefined) finish(outcome);
      });
    },
    close: () => closeServer(server, { force: true }),
  };
}

/** One request to the redirect listener: the first redirect with our state ends the wait (`finish`), with a code or an error. */
function answerRedirect(
  req: IncomingMessage,
  res: ServerResponse<IncomingMessage>,
  listener: { state: string; logger: Logger; answered(): boolean; finish(result: RedirectOutcome): void },
): void {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (req.method !== 'GET' || url.pathname !== REDIRECT_PATH) {
    page(
      res,
      404,
      'Not found',
      'This is bearer-sidecar authorize: it only waits for the authorization server to redirect here.',
    );
    return;
  }
  const given = url.searchParams.get('state') ?? '';
  if (!sameState(given, listener.state)) {
    // Not our request (a stale tab, a forged link): refuse it and keep waiting for the real one.
    listener.logger.warn({ path: REDIRECT_PATH }, 'redirect with a missing or wrong state refused');
    page(
      res,
      400,
      'State does not match',
      'This redirect does not belong to the running bearer-sidecar authorize. Start again from the URL it printed.',
    );
    return;
  }
  if (listener.answered()) {
    page(res, 409, 'Already done', 'bearer-sidecar authorize has already received its answer.');
    return;
  }
  const error = url.searchParams.get('error');
  const code = url.searchParams.get('code');
  if (error !== null || code === null || code === '') {
    const description = url.searchParams.get('error_description');
    // R4: the redirect's words are the server's (or anyone's who can open the URL): escaped and bounded.
    const reason = scrubServerText(`${error ?? 'no code in the redirect'}${description ? `: ${description}` : ''}`, []);
    page(res, 400, 'Not authorized', `The authorization server answered: ${reason}. bearer-sidecar authorize stops.`);
    listener.finish({ error: new AuthorizeError(`the authorization server answered ${reason}`) });
    return;
  }
  page(
    res,
    200,
    'Authorized',
    'bearer-sidecar received the authorization and is exchanging it for tokens. You can close this tab; the terminal says what happens next.',
  );
  listener.finish({ code });
}

function sameState(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function page(res: ServerResponse<IncomingMessage>, status: number, title: string, text: string): void {
  const escape = (value: string) => value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'",
  });
  res.end(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bearer-sidecar: ${escape(title)}</title></head><body style="font-family:system-ui,sans-serif;margin:3rem"><h1>${escape(title)}</h1><p>${escape(text)}</p></body></html>`,
  );
}
