// sccgo-recovery.mjs: gap-free resubscription for the stock
// socketcluster-client (v20) against sccgo.
//
// sccgo keeps a history for channels whose rule says so (docs/recovery.md):
// each publication carries its offset and the channel's epoch in fields of
// the #publish data that the stock client ignores, and a #subscribe may ask
// to recover everything after an offset. This module wraps a stock client
// socket: it remembers the last offset and epoch of each channel it
// subscribes, asks for recovery on every resubscribe (the stock client
// resubscribes by itself after a reconnect), and tells you the outcome.
//
//   import socketClusterClient from 'socketcluster-client';
//   import { Recovery } from './sccgo-recovery.mjs';
//
//   const socket = socketClusterClient.create({ hostname, port });
//   const recovery = new Recovery(socket);
//   recovery.addEventListener('recoveryfailed', (e) => reloadFromBackend(e.detail.channel));
//   const channel = recovery.subscribe('room:42');   // a stock AGChannel
//   for await (const data of channel) { ... }        // missed ones first, once, in order
//
// Events (EventTarget, detail {channel, asked, recovered, offset, epoch, reason}):
//   'recovery'        every acknowledged subscribe of a channel with history;
//   'recoveryfailed'  a resubscribe asked to recover and messages were missed
//                     that will not come (reason: epoch, gone, limit, ahead,
//                     disabled, or unsupported when the server kept no history);
//                     also a message that arrives under another epoch than
//                     the channel's (asked false, reason epoch): the server
//                     lost the channel's history meanwhile, so messages may
//                     have been missed. Tracking continues from that message.
//
// It has no imports: it works in Node and in browsers with any build of the
// stock client (the npm package, or its ES module build
// socketcluster-client.min.js in browsers).

export class Recovery extends EventTarget {
  /**
   * @param socket a socket from socketClusterClient.create()
   */
  constructor(socket) {
    super();
    this.socket = socket;
    // channel name -> { data, offset, epoch }; data is the object the stock
    // client sends with every #subscribe of the channel.
    this.channels = new Map();
    this._closed = false;
    this._consume();
  }

  /**
   * subscribe is socket.subscribe with recovery: options are the stock
   * client's; options.data, if given, must be an object (it gains a
   * `recover` field while the channel has a position).
   */
  subscribe(name, options = {}) {
    let st = this.channels.get(name);
    if (!st) {
      const data = options.data === undefined ? {} : options.data;
      if (data === null || typeof data !== 'object' || Array.isArray(data)) {
        throw new TypeError('sccgo-recovery: subscribe data must be an object');
      }
      st = { data, offset: 0, epoch: '' };
      this.channels.set(name, st);
    }
    return this.socket.subscribe(name, { ...options, data: st.data });
  }

  /** unsubscribe forgets the channel's position and unsubscribes. */
  unsubscribe(name) {
    this.channels.delete(name);
    this.socket.unsubscribe(name);
  }

  /** position returns {offset, epoch} of the last message of the channel. */
  position(name) {
    const st = this.channels.get(name);
    return st ? { offset: st.offset, epoch: st.epoch } : undefined;
  }

  /** close stops tracking (the socket is left as it is). */
  close() {
    this._closed = true;
    this.socket.closeListener('message');
  }

  async _consume() {
    for await (const { message } of this.socket.listener('message')) {
      if (this._closed) return;
      if (typeof message !== 'string' || message === '' || message === '#1') continue;
      let packet;
      try {
        packet = JSON.parse(message);
      } catch {
        continue;
      }
      for (const p of Array.isArray(packet) ? packet : [packet]) this._packet(p);
    }
  }

  _packet(p) {
    if (!p || typeof p !== 'object') return;
    const d = p.data;
    if (!d || typeof d !== 'object') return;
    if (p.event === '#publish') {
      const st = this.channels.get(d.channel);
      if (st && typeof d.offset === 'number' && typeof d.epoch === 'string') {
        const changed = st.epoch !== '' && d.epoch !== st.epoch;
        if (changed || d.offset > st.offset || st.epoch === '') this._set(st, d.offset, d.epoch);
        if (changed) {
          // The history this channel's offsets counted in is gone: what
          // was published between the last message and this one is lost.
          const detail = {
            channel: d.channel, asked: false, recovered: false,
            offset: d.offset, epoch: d.epoch, reason: 'epoch',
          };
          this.dispatchEvent(new CustomEvent('recoveryfailed', { detail }));
        }
      }
      return;
    }
    if (typeof p.rid === 'number' && typeof d.channel === 'string' && 'recovered' in d) {
      this._ack(d);
    }
  }

  _ack(d) {
    const st = this.channels.get(d.channel);
    if (!st) return;
    const asked = !!st.data.recover;
    const detail = {
      channel: d.channel, asked, recovered: asked && d.recovered === true,
      offset: d.offset, epoch: d.epoch, reason: d.reason || '',
    };
    if (typeof d.epoch !== 'string' || d.epoch === '') {
      detail.reason = 'unsupported';
      st.offset = 0;
      st.epoch = '';
      delete st.data.recover;
    } else if (!detail.recovered || d.epoch !== st.epoch) {
      // Nothing (more) to replay: continue from the channel's position.
      this._set(st, d.offset, d.epoch);
    }
    this.dispatchEvent(new CustomEvent('recovery', { detail }));
    if (asked && !detail.recovered) this.dispatchEvent(new CustomEvent('recoveryfailed', { detail }));
  }

  _set(st, offset, epoch) {
    st.offset = offset;
    st.epoch = epoch;
    st.data.recover = { offset, epoch };
  }
}
