#!/usr/bin/python3
"""extract_fixtures.py DIR — writes the fixtures of test_extract_formats.c.

Tables, slides and spreadsheets made by the tools users' files come from:
pandoc (docx, odt, html, epub, pptx with speaker notes, from one Markdown
source), openpyxl (xlsx); OpenDocument spreadsheets and presentations, and
the cases no tool writes on request (merged cells, inline strings, hostile
files), are written as zips here (mimetype first, stored). Nothing is
committed as a binary.
"""
import os
import subprocess
import sys
import zipfile

D = sys.argv[1]


def path(name):
    return os.path.join(D, name)


MD = """# Prices

Before the table.

| Name | Price | Note |
|------|------:|------|
| Tea  | 3     | hot \\| cold |
| Cake | 4.5   | sweet |

After the table.

::: notes
Say the prices aloud.
:::

# Second slide

Closing words.
"""


def pandoc():
    src = path("source.md")
    with open(src, "w") as f:
        f.write(MD)
    for ext in ("docx", "odt", "html", "epub", "pptx"):
        subprocess.run(["pandoc", src, "-s", "--metadata", "title=Menu",
                        "-o", path("pandoc." + ext)], check=True)


def xlsx():
    import openpyxl
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Fruit"
    ws.append(["Name", "Count", "Fresh"])
    ws.append(["Apple", 3, True])
    ws.append(["Pear|Quince", 2.5, False])
    ws["E4"] = "far"          # a gap: columns D and E, row 4 alone
    ws2 = wb.create_sheet("Empty one")
    ws3 = wb.create_sheet("Totals")
    ws3.append(["Total", 5.5])
    wb.save(path("book.xlsx"))


def xlsx_dates():
    """Dates, times and a custom date format in both date systems; money
    stays a number."""
    import datetime
    import openpyxl
    for name, epoch in (("dates.xlsx", None), ("dates1904.xlsx", "1904")):
        wb = openpyxl.Workbook()
        if epoch:
            wb.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
        ws = wb.active
        ws.title = "Dates"
        ws.append(["What", "When"])
        ws.append(["day", datetime.date(2024, 3, 1)])
        ws.append(["moment", datetime.datetime(2024, 3, 1, 14, 30)])
        ws.append(["clock", datetime.time(14, 30, 5)])
        ws.append(["custom", datetime.date(2024, 3, 1)])
        ws["B5"].number_format = 'dd"/"mm"/"yyyy'
        ws.append(["money", 1234.5])
        ws["B6"].number_format = '"$"#,##0.00'
        if not epoch:
            ws.append(["early", datetime.date(1900, 2, 28)])
        wb.save(path(name))


CT = ('<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
      'content-types"/>')
RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
S_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def xlsx_raw(name, sheet_xml_writer, strings=None):
    """An xlsx with one sheet whose XML the writer streams into the zip."""
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CT)
        z.writestr("xl/workbook.xml",
                   '<?xml version="1.0"?><workbook xmlns="%s" xmlns:r="%s"><sheets>'
                   '<sheet name="Big" sheetId="1" r:id="rId1"/></sheets></workbook>'
                   % (S_NS, R_NS))
        z.writestr("xl/_rels/workbook.xml.rels",
                   '<?xml version="1.0"?><Relationships xmlns="%s"><Relationship Id="rId1" '
                   'Type="%s/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
                   % (RELS_NS, R_NS))
        if strings is not None:
            z.writestr("xl/sharedStrings.xml", strings)
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            sheet_xml_writer(f)


def xlsx_inline(f):
    f.write(('<?xml version="1.0"?><worksheet xmlns="%s"><sheetData>'
             '<row r="1"><c r="A1" t="inlineStr"><is><t>Key</t></is></c>'
             '<c r="B1" t="s"><v>0</v></c></row>'
             '<row r="3"><c r="A3" t="inlineStr"><is><r><t>rich </t></r><r><t>text</t></r>'
             '</is></c><c r="B3" t="e"><v>#DIV/0!</v></c><c r="C3" t="b"><v>1</v></c></row>'
             '</sheetData></worksheet>' % S_NS).encode())


def xlsx_million(f):
    """100,000 rows of 10 numbers: a million cells."""
    f.write(('<?xml version="1.0"?><worksheet xmlns="%s"><sheetData>' % S_NS).encode())
    cols = "ABCDEFGHIJ"
    for r in range(1, 100001):
        cells = "".join('<c r="%s%d"><v>%d</v></c>' % (c, r, r) for c in cols)
        f.write(('<row r="%d">%s</row>' % (r, cells)).encode())
    f.write(b"</sheetData></worksheet>")


def xlsx_big_cells(f):
    """3,000 rows of 10 cells of about 900 bytes: 27 MB of text."""
    f.write(('<?xml version="1.0"?><worksheet xmlns="%s"><sheetData>' % S_NS).encode())
    for r in range(3000):
        cells = "".join('<c t="inlineStr"><is><t>%s</t></is></c>' % (("r%dc%d " % (r, c)) * 100)
                        for c in range(10))
        f.write(("<row>%s</row>" % cells).encode())
    f.write(b"</sheetData></worksheet>")


def xlsx_bomb(f):
    """A sheet of 40 MB of empty rows: deflates past the ratio limit."""
    f.write(('<?xml version="1.0"?><worksheet xmlns="%s"><sheetData>' % S_NS).encode())
    chunk = b"<row/>" * 100000
    for _ in range(70):
        f.write(chunk)
    f.write(b"</sheetData></worksheet>")


ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
          'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"')


def odf(name, mime, body):
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), mime, compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", '<?xml version="1.0" encoding="UTF-8"?>'
                   '<office:document-content %s office:version="1.2"><office:body>%s'
                   '</office:body></office:document-content>' % (ODF_NS, body))
        z.writestr("META-INF/manifest.xml",
                   '<?xml version="1.0"?><manifest:manifest xmlns:manifest="urn:oasis:names:'
                   'tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry '
                   'manifest:full-path="/" manifest:media-type="%s"/><manifest:file-entry '
                   'manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
                   '</manifest:manifest>' % mime)


def cell(text, extra=""):
    return '<table:table-cell%s><text:p>%s</text:p></table:table-cell>' % (extra, text)


def ods():
    rows = [
        '<table:table-row>' + cell("City") + cell("Pop") + '</table:table-row>',
        '<table:table-row>' + cell("Oslo") + cell("700000", ' office:value-type="float" '
                                                   'office:value="700000"') +
        '<table:table-cell table:number-columns-repeated="16382"/></table:table-row>',
        '<table:table-row table:number-rows-repeated="1000"><table:table-cell '
        'table:number-columns-repeated="16384"/></table:table-row>',
        '<table:table-row table:number-rows-repeated="2">' + cell("x") +
        cell("y", ' table:number-columns-repeated="2"') + '</table:table-row>',
        '<table:table-row table:number-rows-repeated="1048000"><table:table-cell '
        'table:number-columns-repeated="16384"/></table:table-row>',
    ]
    body = ('<office:spreadsheet><table:table table:name="Cities">%s</table:table>'
            '<table:table table:name="Second"><table:table-row>%s</table:table-row>'
            '</table:table></office:spreadsheet>' % ("".join(rows), cell("only")))
    odf("sheet.ods", "application/vnd.oasis.opendocument.spreadsheet", body)


def ods_million():
    rows = "".join("<table:table-row>%s</table:table-row>"
                   % "".join(cell(str(r * 10 + c)) for c in range(10)) for r in range(100000))
    body = ('<office:spreadsheet><table:table table:name="Big">%s</table:table>'
            '</office:spreadsheet>' % rows)
    odf("million.ods", "application/vnd.oasis.opendocument.spreadsheet", body)


def odp():
    def frame(cls, paras):
        return ('<draw:frame presentation:class="%s"><draw:text-box>%s</draw:text-box>'
                '</draw:frame>' % (cls, "".join("<text:p>%s</text:p>" % p for p in paras)))
    notes = ('<presentation:notes><draw:page-thumbnail/>%s</presentation:notes>'
             % frame("notes", ["Remember the pause."]))
    page1 = ('<draw:page draw:name="page1">%s%s%s</draw:page>'
             % (frame("title", ["Opening"]), frame("outline", ["First point", "Second point"]),
                notes))
    table = ('<draw:frame><table:table><table:table-row>%s%s</table:table-row>'
             '<table:table-row>%s%s</table:table-row></table:table></draw:frame>'
             % (cell("K"), cell("V"), cell("a"), cell("1")))
    page2 = '<draw:page draw:name="page2">%s%s</draw:page>' % (frame("title", ["Data"]), table)
    odf("deck.odp", "application/vnd.oasis.opendocument.presentation",
        "<office:presentation>%s%s</office:presentation>" % (page1, page2))


def docx_merged():
    W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

    def tc(text, pr=""):
        return ('<w:tc><w:tcPr>%s</w:tcPr><w:p><w:r><w:t>%s</w:t></w:r></w:p></w:tc>'
                % (pr, text))
    inner = ('<w:tbl><w:tr>%s%s</w:tr></w:tbl>' % (tc("in1"), tc("in2")))
    doc = ('<?xml version="1.0"?><w:document xmlns:w="%s"><w:body><w:tbl>'
           '<w:tr>%s%s%s</w:tr>'
           '<w:tr>%s%s</w:tr>'
           '<w:tr>%s%s<w:tc><w:p><w:r><w:t>outer</w:t></w:r></w:p>%s</w:tc></w:tr>'
           '<w:tr>%s</w:tr>'
           '</w:tbl></w:body></w:document>'
           % (W, tc("H1"), tc("H2"), tc("H3"),
              tc("wide", '<w:gridSpan w:val="2"/>'), tc("c3"),
              tc("tall", '<w:vMerge w:val="restart"/>'), tc("b3"), inner,
              tc("", '<w:vMerge/>')))
    with zipfile.ZipFile(path("merged.docx"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CT)
        z.writestr("word/document.xml", doc)


def csv_files():
    with open(path("latin1.csv"), "wb") as f:
        f.write('Nom;Ville;Prix\r\n"Crème; brûlée";Paris;"4,50"\r\n'
                '"Two\r\nlines";"Say ""hi""";7\r\nÉclair;Lyon;3\r\n'.encode("latin-1"))
    with open(path("plain.tsv"), "wb") as f:
        f.write(b"\xef\xbb\xbfa\tb\tc\n1\t2\t3\n4\t5\n")
    with open(path("data.bin"), "wb") as f:
        f.write(b"id|name|score\n1|ann|9\n2|bob|7\n3|cy|8\n")
    with open(path("prose.bin"), "wb") as f:
        f.write(b"Dear Ann, thank you for the letter.\nIt came, at last, on Monday.\n"
                b"We are well, and so is the dog.\nSee you soon, I hope.\n")


def truncated():
    with open(path("book.xlsx"), "rb") as f:
        data = f.read()
    with open(path("truncated.xlsx"), "wb") as f:
        f.write(data[: len(data) // 2])


if __name__ == "__main__":
    pandoc()
    xlsx()
    xlsx_dates()
    xlsx_raw("inline.xlsx", xlsx_inline,
             '<?xml version="1.0"?><sst xmlns="%s"><si><t>Value</t><rPh><t>ruby</t></rPh>'
             '</si></sst>' % S_NS)
    xlsx_raw("million.xlsx", xlsx_million)
    xlsx_raw("bomb.xlsx", xlsx_bomb)
    xlsx_raw("bigcells.xlsx", xlsx_big_cells)
    ods()
    ods_million()
    odp()
    docx_merged()
    csv_files()
    truncated()
