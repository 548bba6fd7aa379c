/**
 * One EventSource for the whole page: the live feed of the signed-in user,
 * optionally narrowed to one customer. Views subscribe to its batches. The
 * browser reconnects by itself after a drop (the server advises 2 s).
 */
import type { FeedItem } from './api.js';

/** A batch as the server sends it. */
export interface FeedBatch {
  readonly items: readonly FeedItem[];
  readonly more: number;
}

type Listener = (batch: FeedBatch) => void;

/** The page's live feed connection. */
export class FeedHub {
  private source: EventSource | null = null;
  private readonly listeners = new Set<Listener>();
  private customer: string | null = null;
  /** 'open', 'connecting' or 'closed', for the status line. */
  state: 'open' | 'connecting' | 'closed' = 'closed';
  onState: (() => void) | null = null;

  /** Opens (or reopens) the stream for a customer filter (null: everything the user may see). */
  open(customer: string | null): void {
    if (this.source && this.customer === customer) return;
    this.close();
    this.customer = customer;
    const url = customer ? `/api/v1/feed?customer=${encodeURIComponent(customer)}` : '/api/v1/feed';
    const es = new EventSource(url);
    this.source = es;
    this.setState('connecting');
    es.onopen = () => this.setState('open');
    es.onerror = () => this.setState(es.readyState === EventSource.CLOSED ? 'closed' : 'connecting');
    es.onmessage = (ev: MessageEvent<string>) => {
      const batch = JSON.parse(ev.data) as FeedBatch;
      for (const l of this.listeners) l(batch);
    };
  }

  /** The current customer filter. */
  get filter(): string | null {
    return this.customer;
  }

  /** Subscribes; returns the unsubscribe function. */
  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  close(): void {
    this.source?.close();
    this.source = null;
    this.setState('closed');
  }

  private setState(s: FeedHub['state']): void {
    this.state = s;
    this.onState?.();
  }
}
