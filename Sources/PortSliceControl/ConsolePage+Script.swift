// The console's script: the token, the API calls and the long poll, and the rendering of each
// panel (the address rows virtualized above 2,000 addresses). See ConsolePage for the markup it
// relies on and the policy it obeys. One script in four parts, a file each.
extension ConsolePage {
    /// The whole script, served as `/console/console.js`.
    public static let javaScript = [scriptCore, scriptAddressSpace, scriptPanels, scriptSessions].joined(separator: "\n")

    /// Settings, errors and requests, formatting, host colours and the page's model; it opens the
    /// script's one function, which `scriptSessions` closes.
    static let scriptCore = #"""
    'use strict';

    // The portslice operator console. Reads the allocator's JSON API with a viewer or admin
    // token and follows the slice table's long poll, re-reading the rest on every answer.
    (() => {
      const TOKEN_KEY = 'portslice.consoleToken';
      const ROW_HEIGHT = 30;          // px; matches --row-height, so rows can be windowed
      const RENDER_ALL_LIMIT = 2000;  // up to this many rows are all in the DOM
      const OVERSCAN = 15;            // rows drawn above and below the viewport
      const MAX_BACKOFF_MS = 10000;
      const MIN_REFRESH_INTERVAL_MS = 1000; // while the table changes fast, re-read at most this often
      const STATES = ['free', 'leased', 'quarantined', 'draining'];

      const $ = (id) => document.getElementById(id);
      const metrics = { firstRenderMs: null, renders: 0, version: null };
      window.portsliceConsole = metrics;

      // Everything the page knows; replaced as a whole on each refresh.
      const data = {
        rows: [],               // [{address, summary, draining, slices: [{index, ports, state, host}], counts, hosts: Set}]
        rowsByAddress: new Map(),
        leases: new Map(),      // "address/index" -> lease
        capacity: [],
        hosts: [],
        edges: { tableVersion: null, edges: [] },
        version: null,
        fetchedAt: null,
      };
      const view = { filtered: [], windowStart: -1, windowEnd: -1, allRendered: false, scheduled: false };
      let session = null;  // {controller: AbortController}; replaced on sign-in, cleared on sign-out

      // MARK: - Errors and requests

      class AuthError extends Error {
        constructor(status) {
          super(status === 403 ? 'forbidden' : 'unauthorized');
          this.status = status;
        }
      }

      class APIError extends Error {
        constructor(status, message, field) {
          super(message);
          this.status = status;
          this.field = field;
        }
      }

      async function api(path, signal) {
        const token = sessionStorage.getItem(TOKEN_KEY);
        if (!token) throw new AuthError(null);
        const response = await fetch(path, {
          headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
          credentials: 'omit',
          cache: 'no-store',
          signal,
        });
        if (response.status === 401 || response.status === 403) throw new AuthError(response.status);
        let body = null;
        try { body = await response.json(); } catch { body = null; }
        if (!response.ok) {
          throw new APIError(response.status, body?.error ?? `HTTP ${response.status}`, body?.field);
        }
        return body;
      }

      // Resolves after `ms`, or at once when `signal` aborts.
      const sleep = (ms, signal) => new Promise((resolve) => {
        if (ms <= 0 || signal.aborted) {
          resolve();
          return;
        }
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal.addEventListener('abort', done);
      });

      // MARK: - Formatting

      const escapeHTML = (text) => String(text ?? '').replace(/[&<>"']/g,
        (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

      // Times arrive as milliseconds since 1970, or as {"milliseconds": N} in log records.
      const millis = (value) => (value && typeof value === 'object' ? value.milliseconds : value);

      function relative(ms) {
        if (ms == null) return '—';
        const seconds = Math.round((Date.now() - ms) / 1000);
        const ago = seconds >= 0;
        const s = Math.abs(seconds);
        const text = s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86400
          ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min` : `${Math.floor(s / 86400)} d`;
        return ago ? `${text} ago` : `in ${text}`;
      }

      const absolute = (ms) => (ms == null ? '—' : new Date(ms).toLocaleString());

      // "US/US-CA/Los Angeles, residential, reputation high", worded as the server words a
      // class, but leaving out what is not asked for: a host that wants "US" reads "US".
      function traitSummary(traits) {
        if (!traits) return 'anything';
        const place = [traits.country, traits.region, traits.city].filter(Boolean).join('/');
        const category = traits.category === 'unknown' ? null : traits.category;
        const parts = [place, category, traits.reputation && `reputation ${traits.reputation}`];
        if (traits.tags?.length) parts.push(`tags ${traits.tags.join(';')}`);
        return parts.filter(Boolean).join(', ') || 'anything';
      }

      function addressKey(address) {
        return address.split('.').reduce((sum, part) => sum * 256 + Number(part), 0);
      }

      // MARK: - Host colours

      // A stable hue per host name (FNV-1a), applied by a constructed style sheet so that the
      // page needs no inline style (the console's content security policy forbids them).
      const hostSheet = new CSSStyleSheet();
      document.adoptedStyleSheets = [...document.adoptedStyleSheets, hostSheet];
      const colouredHosts = new Set();

      function hostHash(name) {
        let hash = 0x811c9dc5;
        for (let i = 0; i < name.length; i++) {
          hash ^= name.charCodeAt(i);
          hash = Math.imul(hash, 0x01000193) >>> 0;
        }
        return hash;
      }

      function colourHosts(names) {
        for (const name of names) {
          if (colouredHosts.has(name)) continue;
          colouredHosts.add(name);
          const hash = hostHash(name);
          const hue = hash % 360;
          const lightness = 50 + ((hash >>> 16) % 3) * 10; // three shades, so that near hues differ
          hostSheet.insertRule(`[data-host="${CSS.escape(name)}"] { --host: hsl(${hue} 68% ${lightness}%); }`, hostSheet.cssRules.length);
        }
      }

      // MARK: - Model

      function buildModel(pool, table, leases) {
        const rowsByAddress = new Map();
        const newRow = (address, summary, draining) => ({
          address, summary, draining, slices: [], counts: { free: 0, leased: 0, quarantined: 0, draining: 0 }, hosts: new Set(),
        });
        for (const entry of pool.addresses) {
          rowsByAddress.set(entry.address, newRow(entry.address, entry.summary ?? traitSummary(entry.traits), entry.draining === true));
        }
        for (const slice of table.slices) {
          let row = rowsByAddress.get(slice.address);
          if (!row) {
            row = newRow(slice.address, '', false);
            rowsByAddress.set(slice.address, row);
          }
          // A draining address's free slices are draining too, whichever answer came first.
          const state = slice.state === 'free' && row.draining ? 'draining' : slice.state;
          row.slices.push({ index: slice.index, ports: slice.ports, state, host: slice.host });
        }
        const hostNames = new Set();
        for (const row of rowsByAddress.values()) {
          row.slices.sort((a, b) => a.index - b.index);
          for (const slice of row.slices) {
            row.counts[slice.state] = (row.counts[slice.state] ?? 0) + 1;
            if (slice.host) {
              row.hosts.add(slice.host);
              hostNames.add(slice.host);
            }
          }
        }
        data.rows = [...rowsByAddress.values()].sort((a, b) => addressKey(a.address) - addressKey(b.address));
        data.rowsByAddress = rowsByAddress;
        data.leases = new Map(leases.leases.map((lease) => [`${lease.address}/${lease.slice}`, lease]));
        data.version = table.version;
        colourHosts(hostNames);
      }

    """#
}
