extension ConsolePage {
    /// The address rows (windowed above 2,000 addresses) and the slice tooltip.
    static let scriptAddressSpace = #"""
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

    """#
}
