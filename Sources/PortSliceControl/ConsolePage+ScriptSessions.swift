extension ConsolePage {
    /// The refresh loop (the long poll) and signing in and out; it closes the script's function.
    static let scriptSessions = #"""
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
