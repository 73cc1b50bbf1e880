/* opc.h — parts and relationships of an Office Open XML package (the
 * pptx and xlsx backends; the docx backend reads fixed part names only).
 *
 * A part's relationships (ids, types, targets) live in _rels/<name>.rels
 * beside it. Targets are resolved to part names as the zip stores them
 * ("../slides/slide1.xml" from "ppt/_rels/presentation.xml.rels" gives
 * "ppt/slides/slide1.xml"); external targets are left out. A .rels part is
 * read up to OPC_RELS_XML_MAX bytes and OPC_RELS_MAX relationships: past
 * that, or when it is not XML, EXTRACT_ECORRUPT. A document type
 * declaration is refused (ECORRUPT) here and in every part read through
 * opc_reader_open().
 */
#ifndef KVCHAT_EXTRACT_OPC_H
#define KVCHAT_EXTRACT_OPC_H

#include <stdbool.h>
#include <stddef.h>

#include <libxml/xmlreader.h>

#include "extract/zipread.h"

#define OPC_RELS_XML_MAX ((size_t)4 << 20)
#define OPC_RELS_MAX 20000
#define OPC_NAME_MAX 1024   /* longest part name */

typedef struct {
    char *id;
    char *type;     /* the relationship type URI ("" when none) */
    char *target;   /* the part name, resolved */
} opc_rel_t;

typedef struct {
    opc_rel_t *v;
    size_t n;
} opc_rels_t;

/* Read the relationships of `part` into *rels (caller-owned, cleaned with
 * opc_rels_cleanup even on failure). A part without a .rels has none
 * (returns 0). Returns 0, EXTRACT_ECORRUPT, EXTRACT_EMEMORY or a zipread
 * code. */
int opc_rels_read(zipread_t *z, const char *part, opc_rels_t *rels);

/* The relationship with this id, or NULL. The pointer lives as long as
 * rels. */
const opc_rel_t *opc_rels_find(const opc_rels_t *rels, const char *id);

/* The first relationship whose type ends with `suffix` ("/notesSlide"),
 * or NULL. */
const opc_rel_t *opc_rels_find_type(const opc_rels_t *rels, const char *suffix);

/* Frees the relationships. Accepts NULL. */
void opc_rels_cleanup(opc_rels_t *rels);


/* Open part `name` as a streaming XML reader. Returns 0 and sets *e and
 * *r (close both with opc_reader_close); or zipread_entry_open's codes,
 * EXTRACT_EMEMORY. */
int opc_reader_open(zipread_t *z, const char *name, zipread_entry_t **e, xmlTextReaderPtr *r);

/* Close what opc_reader_open() opened. Accepts NULLs. */
void opc_reader_close(zipread_entry_t *e, xmlTextReaderPtr r);

/* One step of the reader: 1 for a node, 0 at the end, or an EXTRACT_*
 * code (a document type declaration, broken XML — the zip layer's own
 * error when it has one, such as EXTRACT_EBOMB — or no memory). */
int opc_reader_next(zipread_entry_t *e, xmlTextReaderPtr r, bool skip);

#endif
