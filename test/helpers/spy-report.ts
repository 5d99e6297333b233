/** What a cipher thread received in one `open` message, apart from its keys. */
export interface OpenSeen {
  /** Each non-key byte field: its length, and every byte of the ArrayBuffer that arrived with it. */
  readonly fields: { readonly name: string; readonly length: number; readonly arrived: string }[];
  /** Byte lengths of the key buffers; their bytes are never reported. */
  readonly keyBytes: number[];
}

export const SPY_CHANNEL = 'rekey-test-cipher-thread-spy';
