// Live updates: the server-sent events name the cases that changed; the page fetches fresh HTML for the
// parts that show them. A form someone typed into is never replaced. Without script every page still works
// (reload to see changes).
(function () {
  "use strict";
  if (!window.EventSource || !window.fetch) return;

  function fragmentUrl(base, name) {
    var url = new URL(base, window.location.href);
    url.searchParams.set("fragment", name);
    return url.toString();
  }

  // guard, when given, is asked again when the fresh HTML arrives: the person may have started typing
  // while it was on its way.
  function refresh(element, base, name, guard) {
    return fetch(fragmentUrl(base, name), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null && (!guard || guard())) element.innerHTML = html; })
      .catch(function () { /* the next event tries again */ });
  }

  // A part of the page someone is using (focus inside: typing, or on a link or button with the keyboard)
  // is not replaced under them; a form is never replaced once typed into.
  function quiet(region) {
    return !region.contains(document.activeElement);
  }

  function untouched(region) {
    var text = region.querySelector("textarea");
    return quiet(region) && (!text || text.value === text.defaultValue);
  }

  var list = document.querySelector('[data-live="list"]');
  var live = document.querySelector('[data-live="case"]');
  var form = document.querySelector('[data-live="form"]');
  if (!list && !live) return;

  var listBehind = false;
  function refreshList() {
    listBehind = !quiet(list);
    if (!listBehind) {
      refresh(list, window.location.href, "list", function () {
        listBehind = !quiet(list);
        return !listBehind;
      });
    }
  }
  if (list) {
    // An update skipped while focus was in the list comes once focus leaves it.
    list.addEventListener("focusout", function () {
      window.setTimeout(function () { if (listBehind) refreshList(); }, 0);
    });
  }

  function update(change) {
    if (list) refreshList();
    if (live && (change.all || change.cases.indexOf(live.dataset.case) >= 0)) {
      refresh(live, live.dataset.url, "live").then(function () {
        var keep = function () { return untouched(form); };
        if (form && keep()) refresh(form, live.dataset.url, "form", keep);
      });
    }
  }

  var source = new EventSource("/events");
  // Whatever changed between serving the page and subscribing (or while reconnecting) sent no event to
  // this page: catch up once the stream is open.
  source.addEventListener("open", function () { update({ all: true, cases: [] }); });
  source.addEventListener("change", function (event) { update(JSON.parse(event.data)); });
})();
