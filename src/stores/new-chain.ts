import type { SaveResult, StoredToken, TokenStore } from './types.js';

/**
 * H2: the store as seen by an account whose credentials changed. The account's record up to
 * revision `baseline` (the old credentials' token and refresh chain) reads as absent, so its new
 * token manager logs in instead of adopting it; the first save replaces that record
 * (compare-and-set against `baseline`), and from then on the view shows the store as it is.
 * Other accounts pass through unchanged.
 */
export function newChainView(store: TokenStore, account: string, baseline: number | undefined): TokenStore {
  if (baseline === undefined) return store;
  const hide = (name: string, record: StoredToken | undefined) =>
    name === account && record !== undefined && record.revision <= baseline ? undefined : record;
  const view: TokenStore = {
    type: store.type,
    shared: store.shared,
    load: async (name) => hide(name, await store.load(name)),
    async save(name, state, expectedRevision, lastKnownRevision): Promise<SaveResult> {
      if (name !== account) return store.save(name, state, expectedRevision, lastKnownRevision);
      const expected = expectedRevision === null ? baseline : expectedRevision;
      const result = await store.save(name, state, expected, Math.max(lastKnownRevision ?? 0, baseline));
      return result.saved ? result : { saved: false, current: hide(name, result.current) };
    },
    obtainLock: (name, ttlMs) => store.obtainLock(name, ttlMs),
    subscribe: (name, onChange) => store.subscribe(name, onChange),
    close: () => store.close(),
  };
  if (store.replicate !== undefined) view.replicate = store.replicate.bind(store);
  if (store.ready !== undefined) view.ready = store.ready.bind(store);
  return view;
}
