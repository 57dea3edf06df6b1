import Blitline

/// How Blitline's functions change an image's size, approximated the way ImageMagick behaves.
enum ImageGeometry {
    /// The size of the output of function `name` with `params` applied to an image of `size`.
    static func apply(_ name: String, params: JSONValue?, to size: ImageSize) -> ImageSize {
        let width = Self.number(params?["width"])
        let height = Self.number(params?["height"])
        let onlyShrink = params?["only_shrink_larger"]?.boolValue == true
        switch name {
        case "resize_to_fit", "resize_to_fit_with_wrap", "thumbnail":
            var factor = Double.infinity
            if let width { factor = min(factor, width / Double(size.width)) }
            if let height { factor = min(factor, height / Double(size.height)) }
            guard factor.isFinite, !(onlyShrink && factor >= 1) else { return size }
            return Self.scaled(size, by: factor)
        case "resize_to_fill", "pad_resize_to_fit", "liquid_rescale":
            guard let width, let height else { return size }
            if onlyShrink, Double(size.width) <= width, Double(size.height) <= height { return size }
            return Self.size(width, height)
        case "resize", "scale":
            if let factor = Self.number(params?["scale_factor"]) { return Self.scaled(size, by: factor) }
            guard width != nil || height != nil else { return size }
            return Self.size(width ?? Double(size.width), height ?? Double(size.height))
        case "crop":
            let x = Int(Self.number(params?["x"]) ?? 0)
            let y = Int(Self.number(params?["y"]) ?? 0)
            let cropWidth = Int(width ?? Double(size.width))
            let cropHeight = Int(height ?? Double(size.height))
            return ImageSize(
                width: max(1, min(cropWidth, size.width - max(0, x))),
                height: max(1, min(cropHeight, size.height - max(0, y)))
            )
        case "crop_to_square":
            let side = min(size.width, size.height)
            return ImageSize(width: side, height: side)
        case "rotate":
            return Self.rotated(size, degrees: Self.number(params?["amount"]) ?? 0)
        case "pad":
            let pad = Int(Self.number(params?["size"]) ?? 0)
            return ImageSize(width: size.width + 2 * pad, height: size.height + 2 * pad)
        case "imagga_smart_crop":
            let parts = (params?["resolution"]?.stringValue ?? "").split(separator: "x").compactMap { Int($0) }
            return parts.count == 2 ? ImageSize(width: max(1, parts[0]), height: max(1, parts[1])) : size
        case "append":
            let vertical = params?["vertical"]?.boolValue == true
            let count = 1 + (params?["other_images"]?.stringValue?.split(separator: ",").count ?? 0)
            return vertical
                ? ImageSize(width: size.width, height: size.height * count)
                : ImageSize(width: size.width * count, height: size.height)
        default:
            return size
        }
    }

    private static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .number: value?.doubleValue
        case .string(let text): Double(text)
        default: nil
        }
    }

    private static func scaled(_ size: ImageSize, by factor: Double) -> ImageSize {
        Self.size(Double(size.width) * factor, Double(size.height) * factor)
    }

    private static func size(_ width: Double, _ height: Double) -> ImageSize {
        ImageSize(width: max(1, Int(width.rounded())), height: max(1, Int(height.rounded())))
    }

    private static func rotated(_ size: ImageSize, degrees: Double) -> ImageSize {
        let normalized = (degrees.truncatingRemainder(dividingBy: 360) + 360).truncatingRemainder(dividingBy: 360)
        if normalized == 0 || normalized == 180 { return size }
        if normalized == 90 || normalized == 270 { return ImageSize(width: size.height, height: size.width) }
        let radians = normalized * .pi / 180
        let cosine = abs(Self.cos(radians))
        let sine = abs(Self.sin(radians))
        return Self.size(
            Double(size.width) * cosine + Double(size.height) * sine,
            Double(size.width) * sine + Double(size.height) * cosine
        )
    }

    // Taylor series keep this file free of Foundation; angles are reduced to [-π, π] first.
    private static func sin(_ x: Double) -> Double {
        var angle = x.truncatingRemainder(dividingBy: 2 * .pi)
        if angle > .pi { angle -= 2 * .pi }
        var term = angle
        var sum = angle
        for n in 1..<12 {
            term *= -angle * angle / Double((2 * n) * (2 * n + 1))
            sum += term
        }
        return sum
    }

    private static func cos(_ x: Double) -> Double { Self.sin(x + .pi / 2) }
}
