// sccgo-presence.mjs: presence for the stock socketcluster-client (v20)
// against sccgo.
//
// sccgo keeps who is in a channel whose rule has `presence`
// (docs/presence.md): two reserved procedures return a channel's members
// and counts, and a channel whose rule also has `join_leave` publishes
// coalesced join and leave events on its companion channel
// `#presence:<channel>`. This module wraps a stock client socket (it does
// not change it) with those calls, a join/leave listener, and a live
// member list that stays current across storms and reconnects.
//
//   import socketClusterClient from 'socketcluster-client';
//   import { Presence } from './sccgo-presence.mjs';
//
//   const socket = socketClusterClient.create({ hostname, port });
//   const presence = new Presence(socket);
//   socket.subscribe('room:42');                         // a member from now on
//   const { clients, users } = await presence.presenceStats('room:42');
//   const page = await presence.presence('room:42', { limit: 100 });
//   const stop = presence.onJoinLeave('room:42', (ev) => console.log(ev.join, ev.leave));
//
//   const room = presence.track('room:42');             // the live list
//   room.addEventListener('change', () => render(room.members, room.clients, room.users));
//
// Only a socket subscribed to the channel may read its presence; the
// procedures of a socket that is not get an InvalidActionError.
//
// It has no imports: it works in Node and in browsers with any build of the
// stock client.

/** PRESENCE_PREFIX starts the companion channel of a channel's events. */
export const PRESENCE_PREFIX = '#presence:';

/** companion returns the channel that carries channel's join/leave events. */
export const companion = (channel) => PRESENCE_PREFIX + channel;

export class Presence {
  /**
   * @param socket a socket from socketClusterClient.create()
   */
  constructor(socket) {
    this.socket = socket;
  }

  /**
   * presence returns one page of channel's members,
   * {clients, users, members: [{client, user?, info?}], next?}; next is the
   * offset of the following page, absent on the last. limit 0 asks for the
   * server's page maximum.
   */
  presence(channel, { offset = 0, limit = 0 } = {}) {
    return this.socket.invoke('#presence', { channel, offset, limit });
  }

  /**
   * members reads every page of channel's members:
   * {clients, users, members}. Pages are not a snapshot: someone who
   * joins or leaves meanwhile may be listed twice or missed.
   */
  async members(channel, { pageSize = 0 } = {}) {
    const out = [];
    let offset = 0;
    for (;;) {
      const page = await this.presence(channel, { offset, limit: pageSize });
      out.push(...page.members);
      if (!page.next || page.next <= offset) {
        return { clients: page.clients, users: page.users, members: out };
      }
      offset = page.next;
    }
  }

  /** presenceStats returns channel's counts, {clients, users}. */
  presenceStats(channel) {
    return this.socket.invoke('#presenceStats', { channel });
  }

  /**
   * joinLeave subscribes to channel's join/leave events and returns the
   * stock client's channel of them: `for await (const ev of ...)`, each
   * {join?, leave?, omitted?, coalesced?, clients, users}.
   */
  joinLeave(channel) {
    return this.socket.subscribe(companion(channel));
  }

  /**
   * onJoinLeave calls listener with each join/leave event of channel
   * until the returned function is called (which also unsubscribes from
   * the events unless keepSubscribed).
   */
  onJoinLeave(channel, listener, { keepSubscribed = false } = {}) {
    const events = this.joinLeave(channel);
    const consumer = events.createConsumer();
    (async () => {
      for (;;) {
        const { value, done } = await consumer.next();
        if (done) return;
        try {
          listener(value);
        } catch (err) {
          setTimeout(() => { throw err; }, 0); // the app's error, not ours
        }
      }
    })();
    return () => {
      consumer.return();
      if (!keepSubscribed) this.socket.unsubscribe(companion(channel));
    };
  }

  /**
   * track keeps a live list of channel's members (see PresenceList). The
   * app subscribes to channel itself; the list is read whenever that
   * subscription is (re)acknowledged.
   */
  track(channel) {
    return new PresenceList(this, channel);
  }
}

/**
 * PresenceList is a channel's members kept current: read in full when the
 * socket's subscription to the channel is acknowledged (at first and after
 * every reconnect, when the events of the gap are lost), then updated by
 * the join/leave events, and read again when an event says that it left
 * changes out (a storm).
 *
 * Fields: members (Map client id -> {client, user?, info?}), clients,
 * users (the counts), ready (a full read has completed).
 * Events (EventTarget): 'change' after every update, detail
 * {join, leave, reloaded}; 'error' when a read failed, detail {error}.
 */
export class PresenceList extends EventTarget {
  constructor(presence, channel) {
    super();
    this.presence = presence;
    this.channel = channel;
    this.members = new Map();
    this.clients = 0;
    this.users = 0;
    this.ready = false;
    this._closed = false;
    this._loading = null;
    this._again = false;
    this._held = []; // events that arrived during a read
    const socket = presence.socket;
    this._events = socket.subscribe(companion(channel));
    this._eventConsumer = this._events.createConsumer();
    this._subConsumer = socket.channel(channel).listener('subscribe').createConsumer();
    this._consumeEvents();
    this._consumeSubscribes();
    if (socket.isSubscribed(channel)) this.reload();
  }

  /** reload reads the whole list again. */
  reload() {
    if (this._closed) return Promise.resolve();
    if (this._loading) {
      this._again = true; // the read under way may be older than the caller's news
      return this._loading;
    }
    this._again = false;
    this._loading = this._read().finally(() => {
      this._loading = null;
      if (this._again) this.reload();
    });
    return this._loading;
  }

  /** close stops tracking and unsubscribes from the events. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._eventConsumer.return();
    this._subConsumer.return();
    this.presence.socket.unsubscribe(companion(this.channel));
  }

  async _read() {
    let got;
    try {
      got = await this.presence.members(this.channel);
    } catch (error) {
      this.dispatchEvent(new CustomEvent('error', { detail: { error } }));
      return;
    }
    if (this._closed) return;
    this.members = new Map(got.members.map((m) => [m.client, m]));
    this.clients = got.clients;
    this.users = got.users;
    this.ready = true;
    // Events that arrived meanwhile may be newer than the read; joins and
    // leaves are idempotent, so apply them on top.
    const held = this._held;
    this._held = [];
    for (const ev of held) {
      this._apply(ev, false);
      if (ev.omitted) this._again = true;
    }
    this.dispatchEvent(new CustomEvent('change', { detail: { join: [], leave: [], reloaded: true } }));
  }

  _apply(ev, notify) {
    for (const m of ev.join || []) this.members.set(m.client, m);
    for (const m of ev.leave || []) this.members.delete(m.client);
    if (typeof ev.clients === 'number') this.clients = ev.clients;
    if (typeof ev.users === 'number') this.users = ev.users;
    if (notify) {
      this.dispatchEvent(new CustomEvent('change', { detail: { join: ev.join || [], leave: ev.leave || [], reloaded: false } }));
    }
  }

  async _consumeEvents() {
    for (;;) {
      const { value: ev, done } = await this._eventConsumer.next();
      if (done || this._closed) return;
      if (!ev || typeof ev !== 'object') continue;
      if (this._loading || !this.ready) {
        // Until the next read: only the newest matter, the read covers
        // the older ones.
        if (this._held.length >= 100) this._held.shift();
        this._held.push(ev);
        continue;
      }
      this._apply(ev, true);
      if (ev.omitted) this.reload(); // a storm: read rather than guess
    }
  }

  async _consumeSubscribes() {
    for (;;) {
      const { done } = await this._subConsumer.next();
      if (done || this._closed) return;
      this.reload();
    }
  }
}
