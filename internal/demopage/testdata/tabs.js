// Opens the demo page script in two simulated browser tabs (separate
// contexts with a fake DOM but a real WebSocket) on two frontends, waits
// until both are connected, sends a message from tab B and waits until tab
// A shows it. Prints "ok" on success.
// Usage: node --experimental-websocket tabs.js page.js <ws url A> <ws url B> [room]
'use strict';
const fs = require('fs');
const vm = require('vm');
const [scriptFile, urlA, urlB, room = 'e2e-' + process.pid] = process.argv.slice(2);
const script = fs.readFileSync(scriptFile, 'utf8');

function makeEl(tag) {
  return {
    tag, children: [], className: '', attrs: {}, listeners: {}, disabled: false, value: '', _text: '',
    scrollTop: 0, clientHeight: 0, scrollHeight: 0,
    get textContent() { return this._text + this.children.map((c) => c.textContent).join(''); },
    set textContent(v) { this._text = String(v); this.children = []; },
    get firstChild() { return this.children[0]; },
    appendChild(c) { this.children.push(c); return c; },
    removeChild(c) { this.children.splice(this.children.indexOf(c), 1); return c; },
    setAttribute(k, v) { this.attrs[k] = String(v); },
    getAttribute(k) { return this.attrs[k]; },
    addEventListener(ev, fn) { this.listeners[ev] = fn; },
  };
}

function openTab(name, url) {
  const byId = {};
  const document = { getElementById: (id) => byId[id] || (byId[id] = makeEl('#' + id)), createElement: makeEl };
  const u = new URL(url);
  const search = '?url=' + encodeURIComponent(url) + '&room=' + encodeURIComponent(room) + '&name=' + name;
  const ctx = vm.createContext({
    document, WebSocket, URLSearchParams, JSON, Math, Date, Promise, Object, Array, String, Error,
    setTimeout, clearTimeout, console,
    location: { protocol: 'http:', host: u.host, search },
  });
  vm.runInContext(script, ctx);
  return {
    name,
    el: (id) => document.getElementById(id),
    status: () => document.getElementById('status').textContent,
    detail: () => document.getElementById('detail').textContent,
    messages: () => document.getElementById('messages').children.map((li) => li.textContent),
  };
}

function waitFor(what, cond, ms) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    (function poll() {
      if (cond()) { resolve(); return; }
      if (Date.now() > deadline) { reject(new Error('timed out waiting for ' + what)); return; }
      setTimeout(poll, 20);
    })();
  });
}

(async () => {
  const a = openTab('alice', urlA);
  const b = openTab('bob', urlB);
  const tabs = [a, b];
  const dump = () => tabs.map((t) => t.name + ': ' + t.status() + ' (' + t.detail() + ') ' + JSON.stringify(t.messages())).join('\n');
  try {
    await waitFor('both tabs connected', () => a.status() === 'connected' && b.status() === 'connected', 15000);
    const text = 'hello across frontends ' + Date.now();
    b.el('input').value = text;
    b.el('form').listeners.submit({ preventDefault() {} });
    await waitFor('tab A to show the message', () => a.messages().some((m) => m.includes('bob') && m.includes(text)), 10000);
    await waitFor('tab B to show its own message', () => b.messages().some((m) => m.includes(text)), 10000);
  } catch (e) {
    console.error(e.message + '\n' + dump());
    process.exit(1);
  }
  console.log('ok');
  process.exit(0);
})();
