extension ConsolePage {
    /// The capacity, hosts and edges panels, and the "who" search.
    static let scriptPanels = #"""
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

    """#
}
