// The console's script: the token, the API calls and the long poll, and the rendering of each
// panel (the address rows virtualized above 2,000 addresses). See ConsolePage for the markup it
// relies on and the policy it obeys.
extension ConsolePage {
    public static let javaScript = #"""
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

      // MARK: - Address space

      function rowHTML(row) {
        let strip = '';
        for (const slice of row.slices) {
          strip += slice.host
            ? `<span class="slice" data-state="${slice.state}" data-index="${slice.index}" data-host="${escapeHTML(slice.host)}" tabindex="-1"></span>`
            : `<span class="slice" data-state="${slice.state}" data-index="${slice.index}" tabindex="-1"></span>`;
        }
        const counts = STATES.map((state) => {
          const n = row.counts[state];
          return `<span class="count${n ? '' : ' zero'}" data-count="${state}" title="${state}">${n}</span>`;
        }).join('');
        const flag = row.draining ? '<span class="flag">draining</span>' : '';
        const summary = escapeHTML(row.summary || '—');
        return `<div class="row" data-address="${escapeHTML(row.address)}">`
          + `<span class="address">${escapeHTML(row.address)}${flag}</span>`
          + `<span class="summary" title="${summary}">${summary}</span>`
          + `<span class="strip" tabindex="0" aria-label="slices of ${escapeHTML(row.address)}">${strip}</span>`
          + `<span class="counts">${counts}</span></div>`;
      }

      function applyFilters() {
        const trait = $('filter-class').value;
        const host = $('filter-host').value;
        const needle = $('filter-address').value.trim();
        view.filtered = data.rows.filter((row) => (!trait || row.summary === trait)
          && (!host || row.hosts.has(host))
          && (!needle || row.address.includes(needle)));
        const space = $('space');
        if (host) {
          space.dataset.hostFilter = host;
        } else {
          delete space.dataset.hostFilter;
        }
        const total = data.rows.length;
        $('space-count').textContent = view.filtered.length === total
          ? `${total} address${total === 1 ? '' : 'es'}`
          : `${view.filtered.length} of ${total} addresses`;
      }

      // Draws the filtered rows: all of them when there are few, else only those near the
      // viewport inside a sizer as tall as the whole list.
      function renderSpace(force) {
        const space = $('space');
        const rows = view.filtered;
        const sizer = $('space-sizer');
        const container = $('space-rows');
        $('space-empty').hidden = rows.length > 0;
        let start = 0;
        let end = rows.length;
        view.allRendered = rows.length <= RENDER_ALL_LIMIT;
        if (!view.allRendered) {
          const first = Math.floor(space.scrollTop / ROW_HEIGHT);
          const visible = Math.ceil((space.clientHeight || 600) / ROW_HEIGHT);
          start = Math.max(0, first - OVERSCAN);
          end = Math.min(rows.length, first + visible + OVERSCAN);
        }
        if (!force && start === view.windowStart && end === view.windowEnd) return;
        view.windowStart = start;
        view.windowEnd = end;
        sizer.style.height = view.allRendered ? '' : `${rows.length * ROW_HEIGHT}px`;
        container.style.transform = start ? `translateY(${start * ROW_HEIGHT}px)` : '';
        let html = '';
        for (let i = start; i < end; i++) html += rowHTML(rows[i]);
        container.innerHTML = html;
        markChosenHost();
      }

      function markChosenHost() {
        const host = $('filter-host').value;
        if (!host) return;
        for (const slice of $('space-rows').querySelectorAll(`.slice[data-host="${CSS.escape(host)}"]`)) {
          slice.classList.add('chosen-host');
        }
      }

      function onSpaceScroll() {
        hideTooltip();
        if (view.allRendered || view.scheduled) return;
        view.scheduled = true;
        requestAnimationFrame(() => {
          view.scheduled = false;
          renderSpace(false);
        });
      }

      function fillSelect(select, values, allLabel) {
        const current = select.value;
        const options = [`<option value="">${escapeHTML(allLabel)}</option>`]
          .concat(values.map((value) => `<option value="${escapeHTML(value)}">${escapeHTML(value)}</option>`));
        select.innerHTML = options.join('');
        select.value = values.includes(current) ? current : '';
      }

      function renderFilterChoices() {
        const classes = [...new Set(data.rows.map((row) => row.summary).filter(Boolean))].sort();
        fillSelect($('filter-class'), classes, 'all classes');
        const hosts = new Set(data.hosts.map((host) => host.name));
        for (const row of data.rows) for (const host of row.hosts) hosts.add(host);
        fillSelect($('filter-host'), [...hosts].sort(), 'all hosts');
      }

      function renderHostLegend() {
        const holding = new Map();
        for (const row of data.rows) {
          for (const slice of row.slices) {
            if (slice.host) holding.set(slice.host, (holding.get(slice.host) ?? 0) + 1);
          }
        }
        const names = [...holding.keys()].sort();
        const shown = names.slice(0, 24);
        let html = shown.map((name) => `<span class="host-chip" data-host="${escapeHTML(name)}">`
          + `<span class="swatch"></span>${escapeHTML(name)} <span class="muted">${holding.get(name)}</span></span>`).join('');
        if (names.length > shown.length) html += `<span class="muted">and ${names.length - shown.length} more hosts</span>`;
        $('host-legend').innerHTML = html;
      }

      // MARK: - Tooltip

      function sliceAt(element) {
        const row = data.rowsByAddress.get(element.closest('.row')?.dataset.address);
        const index = Number(element.dataset.index);
        return row && { row, slice: row.slices.find((slice) => slice.index === index) };
      }

      function showTooltip(element) {
        const found = sliceAt(element);
        if (!found?.slice) return;
        const { row, slice } = found;
        const lease = data.leases.get(`${row.address}/${slice.index}`);
        const entries = [
          ['ports', slice.ports],
          ['state', slice.state],
          ['holder', slice.host ?? '—'],
        ];
        if (lease) {
          entries.push(['lease', `#${lease.id}`], ['since', absolute(lease.start)],
            ['expires', `${absolute(lease.expires)} (${relative(lease.expires)})`]);
        }
        const tooltip = $('tooltip');
        tooltip.innerHTML = `<div class="tip-title">${escapeHTML(row.address)} · slice ${slice.index}</div><dl>`
          + entries.map(([key, value]) => `<dt>${key}</dt><dd>${escapeHTML(value)}</dd>`).join('') + '</dl>';
        tooltip.hidden = false;
        const box = element.getBoundingClientRect();
        const width = tooltip.offsetWidth;
        const height = tooltip.offsetHeight;
        const left = Math.min(Math.max(8, box.left + box.width / 2 - width / 2), window.innerWidth - width - 8);
        const top = box.top - height - 8 >= 8 ? box.top - height - 8 : box.bottom + 8;
        tooltip.style.left = `${left}px`;
        tooltip.style.top = `${top}px`;
      }

      function hideTooltip() {
        $('tooltip').hidden = true;
      }

      function onStripKey(event) {
        const current = event.target.closest('.slice');
        const strip = event.target.closest('.strip');
        if (!strip) return;
        let next = null;
        if (event.key === 'ArrowRight') next = current ? current.nextElementSibling : strip.firstElementChild;
        if (event.key === 'ArrowLeft') next = current ? current.previousElementSibling : strip.lastElementChild;
        if (event.key === 'Escape') hideTooltip();
        if (next) {
          event.preventDefault();
          next.focus();
        }
      }

      // MARK: - Capacity, hosts, edges

      function renderClasses() {
        const container = $('classes');
        container.replaceChildren();
        if (!data.capacity.length) {
          container.innerHTML = '<p class="empty">No addresses in the pool.</p>';
          return;
        }
        for (const entry of data.capacity) {
          const total = STATES.reduce((sum, state) => sum + (entry[state] ?? 0), 0);
          const item = document.createElement('div');
          item.className = 'class';
          item.innerHTML = `<div class="class-head"><span>${escapeHTML(entry.summary || traitSummary(entry.traits))}</span>`
            + `<span class="class-numbers">${entry.free} free · ${entry.leased} leased · ${entry.quarantined} quar. · ${entry.draining} drain. / ${total}</span></div>`
            + '<div class="capbar"></div>'
            + (entry.warning ? `<div class="warning">${escapeHTML(entry.warning)}</div>` : '');
          const bar = item.querySelector('.capbar');
          for (const state of ['leased', 'quarantined', 'draining', 'free']) {
            if (!entry[state]) continue;
            const segment = document.createElement('span');
            segment.className = 'segment';
            segment.dataset.state = state;
            segment.title = `${entry[state]} ${state}`;
            segment.style.flexGrow = String(entry[state]);
            bar.append(segment);
          }
          bar.setAttribute('aria-label', STATES.map((state) => `${entry[state]} ${state}`).join(', '));
          container.append(item);
        }
      }

      function timeCell(ms) {
        return ms == null ? '<span class="none">never</span>'
          : `<span data-time="${ms}" title="${escapeHTML(absolute(ms))}">${relative(ms)}</span>`;
      }

      function renderHosts() {
        const body = $('hosts').tBodies[0];
        $('hosts-count').textContent = `${data.hosts.length} host${data.hosts.length === 1 ? '' : 's'}`;
        if (!data.hosts.length) {
          body.innerHTML = '<tr><td colspan="6" class="none">No hosts yet.</td></tr>';
          return;
        }
        body.innerHTML = data.hosts.map((host) => {
          const labels = Object.entries(host.labels ?? {})
            .map(([key, value]) => `<span class="chip">${escapeHTML(key)}=${escapeHTML(value)}</span>`).join('') || '<span class="none">none</span>';
          const wants = (host.wants ?? []).map((traits) => `<div class="want">${escapeHTML(traitSummary(traits))}</div>`).join('')
            || '<span class="none">nothing</span>';
          const late = host.renewalLate
            ? '<span class="flag-bad" title="not renewed for more than half its lease time">late</span>'
            : '<span class="flag-ok">on time</span>';
          colourHosts([host.name]);
          return `<tr class="${host.renewalLate ? 'late' : ''}" data-host-row="${escapeHTML(host.name)}">`
            + `<td class="name" data-host="${escapeHTML(host.name)}"><span class="swatch"></span>${escapeHTML(host.name)}</td>`
            + `<td>${labels}</td><td class="num">${host.leases}${host.prefixLeases ? ` + ${host.prefixLeases} IPv6` : ''}</td><td>${timeCell(host.lastRenewal)}</td>`
            + `<td>${late}</td><td>${wants}</td></tr>`;
        }).join('');
      }

      function renderEdges() {
        const body = $('edges').tBodies[0];
        $('edges-version').textContent = `table version ${data.edges.tableVersion ?? '—'}`;
        if (!data.edges.edges.length) {
          body.innerHTML = '<tr><td colspan="4" class="none">No edges registered.</td></tr>';
          return;
        }
        body.innerHTML = data.edges.edges.map((edge) => {
          const behind = edge.versionsBehind == null ? '<span class="none">—</span>'
            : edge.versionsBehind > 0 ? `<span class="behind">${edge.versionsBehind}</span>` : '0';
          return `<tr data-edge="${escapeHTML(edge.name)}"><td class="name">${escapeHTML(edge.name)}</td>`
            + `<td class="num">${edge.appliedVersion ?? '<span class="none">not reported</span>'}</td>`
            + `<td class="num">${behind}</td><td>${timeCell(edge.lastReport)}</td></tr>`;
        }).join('');
      }

      function tickRelativeTimes() {
        for (const element of document.querySelectorAll('[data-time]')) {
          element.textContent = relative(Number(element.dataset.time));
        }
      }

      // MARK: - Who

      function localInputValue(date) {
        const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
        return shifted.toISOString().slice(0, 19);
      }

      async function lookUpWho(event) {
        event.preventDefault();
        const result = $('who-result');
        const fields = { address: $('who-address'), port: $('who-port'), at: $('who-time') };
        for (const input of Object.values(fields)) input.removeAttribute('aria-invalid');
        // Until the operator picks a time, "now" means the moment of the look-up, to the millisecond.
        const now = new Date();
        if (!fields.at.dataset.edited) fields.at.value = localInputValue(now);
        const at = fields.at.dataset.edited ? new Date(fields.at.value).getTime() : now.getTime();
        const query = new URLSearchParams({ address: fields.address.value.trim(), port: fields.port.value, at: String(at) });
        result.innerHTML = '<p class="message">Looking up…</p>';
        try {
          const answer = await api(`/v1/who?${query}`, session?.controller.signal);
          if (!answer.records.length) {
            result.innerHTML = `<p class="message">Nobody held ${escapeHTML(query.get('address'))} port ${escapeHTML(query.get('port'))} at ${escapeHTML(absolute(at))}.</p>`;
            return;
          }
          result.innerHTML = '<div class="table-wrap"><table><thead><tr><th>Host</th><th class="num">Lease</th><th>Slice</th><th>Ports</th>'
            + '<th>Start</th><th>End</th></tr></thead><tbody>'
            + answer.records.map((record) => {
              const end = millis(record.end);
              return `<tr><td class="name" data-host="${escapeHTML(record.host)}"><span class="swatch"></span>${escapeHTML(record.host)}</td>`
                + `<td class="num">${record.leaseID}</td><td class="mono">${escapeHTML(record.slice.address)} #${record.slice.index}</td>`
                + `<td class="mono">${escapeHTML(record.ports)} ${escapeHTML(record.protocols ?? '')}</td>`
                + `<td>${escapeHTML(absolute(millis(record.start)))}</td>`
                + `<td>${end == null ? '<span class="flag-ok">still held</span>' : escapeHTML(absolute(end))}</td></tr>`;
            }).join('') + '</tbody></table></div>';
          colourHosts(answer.records.map((record) => record.host));
        } catch (error) {
          if (error instanceof AuthError) {
            signedOut(error);
            return;
          }
          if (error instanceof APIError && fields[error.field]) fields[error.field].setAttribute('aria-invalid', 'true');
          result.innerHTML = `<p class="message error">${escapeHTML(error.message)}</p>`;
        }
      }

      // MARK: - Refresh loop

      function render() {
        applyFilters();
        renderSpace(true);
        renderClasses();
        renderHosts();
        renderEdges();
        $('table-version').textContent = `table v${data.version}`;
        metrics.renders += 1;
        metrics.version = data.version;
        if (metrics.firstRenderMs === null) {
          // Measured once the frame with the data is laid out and painted.
          requestAnimationFrame(() => setTimeout(() => {
            metrics.firstRenderMs = Math.round(performance.now());
          }, 0));
        }
      }

      async function refresh(table, signal) {
        const [pool, slices, leases, capacity, hosts, edges] = await Promise.all([
          api('/v1/pool', signal),
          table ? Promise.resolve(table) : api('/v1/slices', signal),
          api('/v1/leases', signal),
          api('/v1/capacity', signal),
          api('/v1/hosts', signal),
          api('/v1/edges', signal),
        ]);
        const firstData = data.version === null;
        buildModel(pool, slices, leases);
        data.capacity = capacity.classes;
        data.hosts = hosts.hosts;
        data.edges = edges;
        data.fetchedAt = Date.now();
        if (firstData) showDashboard();
        renderFilterChoices();
        renderHostLegend();
        render();
      }

      function setLive(state, text) {
        $('live').dataset.live = state;
        $('live-text').textContent = text;
      }

      function showBanner(text) {
        const banner = $('banner');
        banner.textContent = text;
        banner.hidden = !text;
      }

      async function follow(current) {
        const { signal } = current.controller;
        let failures = 0;
        while (!signal.aborted) {
          try {
            // After a failure, read the table at once rather than wait for a change: the
            // allocator may have come back with the same version, and the page is stale.
            const waitForChange = data.version !== null && failures === 0;
            if (waitForChange) await sleep(MIN_REFRESH_INTERVAL_MS - (Date.now() - data.fetchedAt), signal);
            if (signal.aborted) return;
            const table = waitForChange ? await api(`/v1/slices?since=${data.version}`, signal) : null;
            await refresh(table, signal);
            failures = 0;
            setLive('live', 'live');
            showBanner('');
          } catch (error) {
            if (signal.aborted) return;
            if (error instanceof AuthError) {
              signedOut(error);
              return;
            }
            failures += 1;
            setLive('reconnecting', 'reconnecting');
            if (!(error instanceof APIError)) console.warn('portslice console: refresh failed', error);
            const since = data.fetchedAt ? ` Showing data from ${new Date(data.fetchedAt).toLocaleTimeString()}.` : '';
            if (error instanceof APIError && error.status === 503) {
              showBanner(`The allocator's database is unavailable.${since}`);
            } else if (error instanceof APIError) {
              showBanner(`The allocator answered ${error.status}: ${error.message}.${since}`);
            } else if (failures > 2) {
              showBanner(`Cannot reach the allocator.${since}`);
            }
            await sleep(Math.min(1000 * 2 ** (failures - 1), MAX_BACKOFF_MS), signal);
          }
        }
      }

      // MARK: - Sessions

      function showLogin(message, isError) {
        $('dashboard').hidden = true;
        $('sign-out').hidden = true;
        $('table-version').hidden = true;
        $('login').hidden = false;
        const text = $('login-message');
        text.textContent = message;
        text.dataset.kind = isError ? 'error' : 'info';
        setLive('idle', 'offline');
        showBanner('');
        $('token-input').focus();
      }

      function showDashboard() {
        $('login').hidden = true;
        $('dashboard').hidden = false;
        $('sign-out').hidden = false;
        $('table-version').hidden = false;
      }

      function resetData() {
        data.rows = [];
        data.rowsByAddress = new Map();
        data.version = null;
        data.fetchedAt = null;
        view.windowStart = view.windowEnd = -1;
        $('space-rows').innerHTML = '';
        $('table-version').textContent = 'table v–';
      }

      function startSession() {
        session?.controller.abort();
        resetData();
        session = { controller: new AbortController() };
        setLive('reconnecting', 'connecting');
        follow(session);
      }

      function signedOut(error) {
        session?.controller.abort();
        session = null;
        resetData();
        if (error?.status === 403) {
          showLogin('This token cannot read the console (host or edge token); use a viewer or admin token.', true);
        } else if (error?.status === 401) {
          showLogin('The allocator did not accept this token.', true);
        } else {
          showLogin('Paste a viewer or admin token, or open the console at /console#token=TOKEN.', false);
        }
      }

      // A token in the fragment (never sent to the server) moves to this tab's storage.
      function takeTokenFromFragment() {
        const parameters = new URLSearchParams(location.hash.slice(1));
        const token = parameters.get('token');
        if (!token) return;
        sessionStorage.setItem(TOKEN_KEY, token);
        history.replaceState(null, '', location.pathname + location.search);
      }

      function start() {
        takeTokenFromFragment();
        $('login-form').addEventListener('submit', (event) => {
          event.preventDefault();
          const token = $('token-input').value.trim();
          if (!token) return;
          sessionStorage.setItem(TOKEN_KEY, token);
          $('token-input').value = '';
          startSession();
        });
        $('sign-out').addEventListener('click', () => {
          sessionStorage.removeItem(TOKEN_KEY);
          signedOut(null);
          showLogin('Signed out.', false);
        });
        window.addEventListener('hashchange', () => {
          if (new URLSearchParams(location.hash.slice(1)).has('token')) {
            takeTokenFromFragment();
            startSession();
          }
        });

        const space = $('space');
        space.addEventListener('scroll', onSpaceScroll, { passive: true });
        space.addEventListener('mouseover', (event) => {
          const slice = event.target.closest('.slice');
          if (slice) showTooltip(slice); else hideTooltip();
        });
        space.addEventListener('mouseleave', hideTooltip);
        space.addEventListener('focusin', (event) => {
          if (event.target.classList.contains('slice')) showTooltip(event.target);
        });
        space.addEventListener('focusout', hideTooltip);
        space.addEventListener('keydown', onStripKey);
        window.addEventListener('resize', () => renderSpace(false));

        const refilter = () => {
          space.scrollTop = 0;
          applyFilters();
          renderSpace(true);
        };
        $('filter-class').addEventListener('change', refilter);
        $('filter-host').addEventListener('change', refilter);
        $('filter-address').addEventListener('input', refilter);
        $('filters').addEventListener('submit', (event) => event.preventDefault());

        $('who-time').value = localInputValue(new Date());
        $('who-time').addEventListener('input', (event) => { event.target.dataset.edited = 'true'; });
        $('who-form').addEventListener('submit', lookUpWho);
        setInterval(tickRelativeTimes, 1000);

        if (sessionStorage.getItem(TOKEN_KEY)) {
          startSession();
        } else {
          signedOut(null);
        }
      }

      start();
    })();
    """#
}
