import type { SaveResult, StoredToken, TokenStore } from './types.js';

/**
 * H2: the store as seen by an account whose credentials changed. Whatever the store holds for
 * `account` when this view first reads it (the old credentials' token and refresh chain: the view
 * is made once the old token manager has stopped) reads as absent, so the new token manager logs
 * in instead of adopting it.
 * The first save replaces that record (compare-and-set against the revision first read); from
 * then on the view shows the store as it is. Other accounts pass through unchanged.
 *
 * The baseline is learned by the view's own first successful read, not before: a store that
 * fails that read (a Sentinel failover during the reload) leaves the view hiding, never showing,
 * what it has not read yet, so an unreadable store can never make new credentials adopt the old
 * chain; the token manager's own store-error handling retries the read.
 */
export function newChainView(store: TokenStore, account: string): TokenStore {
  /** The revision of `account`'s record at the first read (null: none stored); undefined until read. */
  let baseline: number | null | undefined;
  const read = async (): Promise<StoredToken | undefined> => {
    const record = await store.load(account);
    if (baseline === undefined) baseline = record?.revision ?? null;
    return record;
  };
  const hide = (record: StoredToken | undefined) =>
    record !== undefined && baseline !== undefined && baseline !== null && record.revision <= baseline
      ? undefined
      : record;
  const view: TokenStore = {
    type: store.type,
    shared: store.shared,
    load: async (name) => (name === account ? hide(await read()) : store.load(name)),
    async save(name, state, expectedRevision, lastKnownRevision): Promise<SaveResult> {
      if (name !== account) return store.save(name, state, expectedRevision, lastKnownRevision);
      if (baseline === undefined) await read();
      const first = baseline ?? null;
      const expected = expectedRevision === null ? first : expectedRevision;
      const result = await store.save(name, state, expected, Math.max(lastKnownRevision ?? 0, first ?? 0));
      return result.saved ? result : { saved: false, current: hide(result.current) };
    },
    obtainLock: (name, ttlMs) => store.obtainLock(name, ttlMs),
    subscribe: (name, onChange) => store.subscribe(name, onChange),
    close: () => store.close(),
  };
  if (store.replicate !== undefined) view.replicate = store.replicate.bind(store);
  if (store.ready !== undefined) view.ready = store.ready.bind(store);
  return view;
}
