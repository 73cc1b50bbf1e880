// page.js — which page shows, with accounts: the app (documents, chat,
// model), the admin page (#admin, admins only) or the sign-in page. In
// local mode none of this runs: the app is the only page, as it always was.
//
// The page is body[data-page] (style.css hides the header's parts that do
// not belong to it) and the `hidden` of the three <main> elements; one of
// them shows at a time. Events: 'page' (detail: the page's name).
import { byId } from './dom.js';
import { emit, isAdmin } from './state.js';

const TITLES = { app: 'kvchat', admin: 'Admin · kvchat', signin: 'Sign in · kvchat' };

/** Shows page `name` ('app', 'admin' or 'signin'). */
export function showPage(name) {
  const was = document.body.dataset.page;
  document.body.dataset.page = name;
  byId('app').hidden = name !== 'app';
  byId('admin-page').hidden = name !== 'admin';
  byId('auth-page').hidden = name !== 'signin';
  document.title = TITLES[name] || 'kvchat';
  if (was !== name) emit('page', name);
}

/** The page the address asks for, once signed in: #admin for admins, else the app. */
export function routedPage() {
  return window.location.hash === '#admin' && isAdmin() ? 'admin' : 'app';
}
