"""Table nodes from plain columns, and finding the extension's output nodes again by role.

Output nodes carry the attribute ``LuDoseResponse.Role``; running an analysis again updates
the nodes of the same role instead of piling up copies.

Cell types: booleans become 0/1; a column of whole numbers an integer column; other numbers
(or numbers with a missing value, None) a double column where None is NaN; anything else a
string column (None -> "").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import vtk

from LuDoseResponseLib.errors import InputError

ROLE_ATTRIBUTE = "LuDoseResponse.Role"
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Column:
    """One table column: a name, its values (top to bottom), a unit label and a description."""

    name: str
    values: Sequence
    unit: str = ""
    description: str = ""


def findNodeByRole(scene, className: str, role: str):
    """The first node of ``className`` whose role attribute is ``role``, or None."""
    for index in range(scene.GetNumberOfNodesByClass(className)):
        node = scene.GetNthNodeByClass(index, className)
        if node.GetAttribute(ROLE_ATTRIBUTE) == role:
            return node
    return None


def findOrCreateNode(scene, className: str, role: str, name: str):
    """The node of ``className`` with this role, created (and named ``name``) if missing."""
    node = findNodeByRole(scene, className, role)
    if node is None:
        node = scene.AddNewNodeByClass(className, name)
        node.SetAttribute(ROLE_ATTRIBUTE, role)
    return node


def _isBool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _isNumber(value) -> bool:
    return isinstance(value, numbers.Real) and not _isBool(value)


def _vtkArray(column: Column) -> vtk.vtkAbstractArray:
    values = list(column.values)
    present = [v for v in values if v is not None]
    if present and all(_isBool(v) for v in present):
        values = [None if v is None else int(bool(v)) for v in values]
        present = [v for v in values if v is not None]
    if present and len(present) == len(values) and all(
            isinstance(v, numbers.Integral) and abs(int(v)) <= _INT32_MAX for v in present):
        array = vtk.vtkIntArray()
        for v in values:
            array.InsertNextValue(int(v))
    elif all(_isNumber(v) for v in present):
        array = vtk.vtkDoubleArray()
        for v in values:
            array.InsertNextValue(math.nan if v is None else float(v))
    else:
        array = vtk.vtkStringArray()
        for v in values:
            array.InsertNextValue("" if v is None else str(v))
    array.SetName(column.name)
    return array


def fillTableNode(tableNode, columns: Sequence[Column]) -> None:
    """Replace every column of ``tableNode`` by ``columns`` (all of the same length)."""
    lengths = {column.name: len(column.values) for column in columns}
    if len(set(lengths.values())) > 1:
        raise InputError(f"table '{tableNode.GetName()}': columns differ in length {lengths}")
    names = [column.name for column in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"table '{tableNode.GetName()}': duplicate column name(s) {duplicates}")
    was_modifying = tableNode.StartModify()
    tableNode.RemoveAllColumns()  # also drops the column properties (units, descriptions)
    for column in columns:
        tableNode.AddColumn(_vtkArray(column))
        if column.unit:
            tableNode.SetColumnUnitLabel(column.name, column.unit)
        if column.description:
            tableNode.SetColumnDescription(column.name, column.description)
    tableNode.EndModify(was_modifying)


def columnsFromMapping(mapping: Mapping[str, Sequence], units: Mapping[str, str] | None = None,
                       descriptions: Mapping[str, str] | None = None) -> list[Column]:
    """Columns from ``{name: values}`` (a dict of lists, or a pandas DataFrame converted with
    ``{c: df[c].tolist() for c in df.columns}``)."""
    units = units or {}
    descriptions = descriptions or {}
    return [Column(str(name), list(values), units.get(name, ""), descriptions.get(name, ""))
            for name, values in mapping.items()]


def tableNodeFromColumns(scene, name: str, columns: Sequence[Column], *, role: str | None = None):
    """A table node holding ``columns``: the node of this role updated in place when ``role`` is
    given and such a node exists, else a new node named ``name``."""
    if role is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    else:
        node = findOrCreateNode(scene, "vtkMRMLTableNode", role, name)
    fillTableNode(node, columns)
    return node
