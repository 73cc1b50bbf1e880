/* xmlquiet.h — libxml2 made silent for kvchat-extract.
 *
 * A hostile file may make libxml2 report an error per byte; kvchat-extract
 * reports one status line, so every backend that parses XML (docx, odt,
 * odp, ods, pptx, xlsx, epub, xhtml) calls xml_quiet_init() before its
 * first parse. */
#ifndef KVCHAT_EXTRACT_XMLQUIET_H
#define KVCHAT_EXTRACT_XMLQUIET_H

/* Initialise libxml2 and drop its error and warning output. Harmless to
 * repeat. */
void xml_quiet_init(void);

#endif
